import { describe, expect, it } from 'vitest';
import { toPrometheus } from '../src/stats.js';

describe('/metrics help lines', () => {
  it('come from the counter declarations', () => {
    const text = toPrometheus({
      role: 'server',
      uptimeSeconds: 1,
      sessions: [],
      counters: { connections: 3, rejectAuthFailed: 1 },
    });
    expect(text).toContain('# HELP plait_connections_total TCP connections accepted.');
    expect(text).toContain('# HELP plait_reject_auth_failed_total Handshakes refused with AUTH_FAILED.');
    expect(text).toContain('plait_connections_total{role="server"} 3');
  });
});
