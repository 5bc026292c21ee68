// Moved to @plait/testkit so the server and node tests drive the same clock.
export { TestClock, track } from '@plait/testkit';
