/**
 * The configuration's use of iSCSI names: target IQNs and ACL initiators
 * are checked by the validator login uses (iscsi/names.ts), so a configured
 * name is one an initiator can log in with.
 */
import { z } from 'zod';
import { isValidIscsiName } from '../../iscsi/names';

/** The validator login uses (iscsi/names.ts), so a configured name is one an initiator can log in with. */
export const iqnSchema = z.string().refine(isValidIscsiName, 'not an iSCSI name (RFC 7143 §4.2.7, RFC 3722)');
