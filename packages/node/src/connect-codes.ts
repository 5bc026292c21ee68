/**
 * The stream RESET code (PROTOCOL.md section 10) for a failed TCP connect,
 * by errno: what a server tells a client whose target failed, and what a
 * client tells the server when a published port's target failed.
 */
import { ResetCode } from '@plait/core';

const CONNECT_CODES: Record<string, ResetCode> = {
  ECONNREFUSED: ResetCode.REFUSED,
  EHOSTUNREACH: ResetCode.HOST_UNREACHABLE,
  EHOSTDOWN: ResetCode.HOST_UNREACHABLE,
  ENETUNREACH: ResetCode.NETWORK_UNREACHABLE,
  ENETDOWN: ResetCode.NETWORK_UNREACHABLE,
  ETIMEDOUT: ResetCode.TIMEOUT,
  ENOTFOUND: ResetCode.DNS_FAILED,
  EAI_AGAIN: ResetCode.DNS_FAILED,
};

export function resetCodeForErrno(code: string): ResetCode {
  return CONNECT_CODES[code] ?? ResetCode.INTERNAL;
}
