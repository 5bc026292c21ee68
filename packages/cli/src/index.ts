// The public API of @plait/cli: the entry point (bin/plait.js loads
// dist/main.js itself). This package's own tests import from ../src/ directly.
export { main } from './main.js';
