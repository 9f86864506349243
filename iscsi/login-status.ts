/**
 * Login Response status (RFC 7143 §11.13.5): class and detail of every
 * refusal, shared by the key negotiation, CHAP and the login stages.
 */

export interface LoginStatus {
  readonly statusClass: number;
  readonly statusDetail: number;
}

export const LOGIN_STATUS = {
  INITIATOR_ERROR: { statusClass: 0x02, statusDetail: 0x00 },
  AUTHENTICATION_FAILURE: { statusClass: 0x02, statusDetail: 0x01 },
  AUTHORIZATION_FAILURE: { statusClass: 0x02, statusDetail: 0x02 },
  TARGET_NOT_FOUND: { statusClass: 0x02, statusDetail: 0x03 },
  TARGET_REMOVED: { statusClass: 0x02, statusDetail: 0x04 },
  UNSUPPORTED_VERSION: { statusClass: 0x02, statusDetail: 0x05 },
  TOO_MANY_CONNECTIONS: { statusClass: 0x02, statusDetail: 0x06 },
  MISSING_PARAMETER: { statusClass: 0x02, statusDetail: 0x07 },
  CANT_INCLUDE_IN_SESSION: { statusClass: 0x02, statusDetail: 0x08 },
  SESSION_TYPE_NOT_SUPPORTED: { statusClass: 0x02, statusDetail: 0x09 },
  SESSION_DOES_NOT_EXIST: { statusClass: 0x02, statusDetail: 0x0a },
  INVALID_DURING_LOGIN: { statusClass: 0x02, statusDetail: 0x0b },
  TARGET_ERROR: { statusClass: 0x03, statusDetail: 0x00 },
  SERVICE_UNAVAILABLE: { statusClass: 0x03, statusDetail: 0x01 },
  OUT_OF_RESOURCES: { statusClass: 0x03, statusDetail: 0x02 },
} as const satisfies Record<string, LoginStatus>;

export interface LoginError extends LoginStatus {
  /** For logs only; never sent on the wire and never contains secrets. */
  readonly reason: string;
}

/** A refusal with its reason for the logs. */
export function loginError(status: LoginStatus, reason: string): LoginError {
  return { statusClass: status.statusClass, statusDetail: status.statusDetail, reason };
}
