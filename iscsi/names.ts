/**
 * iSCSI names (RFC 7143 §4.2.7; RFC 3722, the stringprep profile): the one
 * validator that login (InitiatorName, TargetName) and the configuration
 * schema (target IQNs, ACL initiators) both use, so a target the config
 * loads is a target an initiator can name.
 *
 * What RFC 3722 allows after its mapping step: of ASCII only '-', '.', ':',
 * letters and digits (upper case folds to lower, so both are taken here and
 * names compare case-insensitively); no '_', ',', space or other ASCII
 * punctuation (§5, §6). Non-ASCII characters, except the prohibited tables
 * C.1.2 - C.9 of RFC 3454 (§6). The iqn. date is yyyy-mm, a real month
 * (RFC 7143 §4.2.7.4: the month the naming authority owned the domain).
 */

/** Names are at most 223 bytes of UTF-8 (RFC 7143 §4.2.7.1). */
export const MAX_ISCSI_NAME_LENGTH = 223;

// ASCII letters, digits, '-', '.', ':' and non-ASCII of the Basic Multilingual Plane beyond
// the C1 controls (which leaves out the prohibited planes 15-16 of C.3 and the tags of C.9).
const NAME_CHARS = /^[A-Za-z0-9.\-:\u00a0-\uffff]+$/u;
// RFC 3722 §6, the Basic Multilingual Plane part of RFC 3454 tables C.1.2 (non-ASCII spaces),
// C.2.2 (controls), C.3 (private use), C.4 (noncharacters), C.5 (surrogates), C.6, C.7, C.8.
const PROHIBITED =
  /[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\u06dd\u070f\u180e\u200c\u200d\u2028\u2029\u2060-\u2063\u206a-\u206f\ufeff\ufff9-\ufffd\ue000-\uf8ff\ufdd0-\ufdef\ufffe\uffff\ud800-\udfff\u2ff0-\u2ffb\u0340\u0341\u200e\u200f\u202a-\u202e]/u;
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const IQN_RE = new RegExp(`^iqn\\.[0-9]{4}-(?:0[1-9]|1[0-2])\\.${LABEL}(?:\\.${LABEL})*(?::.*)?$`, 'u');
const EUI_RE = /^eui\.[0-9A-Fa-f]{16}$/;
const NAA_RE = /^naa\.(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$/;

/**
 * `iqn.yyyy-mm.reversed.domain[:anything]`, `eui.` + 16 hex digits, or
 * `naa.` + 16 or 32 hex digits; at most 223 bytes of UTF-8; the type
 * prefix in either case.
 */
export function isValidIscsiName(name: string): boolean {
  if (Buffer.byteLength(name, 'utf8') > MAX_ISCSI_NAME_LENGTH) return false;
  if (!NAME_CHARS.test(name) || PROHIBITED.test(name)) return false;
  const prefix = name.slice(0, 4).toLowerCase();
  const normal = prefix + name.slice(4);
  if (prefix === 'iqn.') return IQN_RE.test(normal);
  if (prefix === 'eui.') return EUI_RE.test(normal);
  if (prefix === 'naa.') return NAA_RE.test(normal);
  return false;
}
