/**
 * SendTargets (RFC 7143 §13 / Appendix C). `All` lists every target the
 * initiator may log in to; an empty value names the session's own target;
 * a target name lists that target when the initiator may see it.
 */
import type { Session } from './session';
import type { ServerContext } from './server';
import type { TargetEntry } from './types';
import { encodeTextKeys, parseTextKeys } from './text';

export function initiatorMaySee(t: TargetEntry, initiatorName: string): boolean {
  return t.acl ? t.acl.mayLogin(initiatorName) : true;
}

export function buildSendTargetsResponse(request: Buffer, session: Session, ctx: ServerContext): Buffer {
  const parsed = parseTextKeys(request);
  if (!parsed.ok) return Buffer.alloc(0);
  const out: Array<[string, string]> = [];
  for (const [key, value] of parsed.pairs) {
    if (key !== 'SendTargets') {
      out.push([key, 'NotUnderstood']);
      continue;
    }
    let list: TargetEntry[];
    if (value === 'All') {
      list = ctx.targets();
    } else if (value === '') {
      list = session.target ? [session.target] : [];
    } else {
      const t = ctx.findTarget(value);
      list = t ? [t] : [];
    }
    for (const t of list) {
      if (!initiatorMaySee(t, session.initiatorName)) continue;
      out.push(['TargetName', t.name]);
      if (t.announce) for (const a of t.announce) out.push(['TargetAddress', `${a.portal},${a.tag}`]);
      else for (const p of t.portals) out.push(['TargetAddress', `${p},${t.portalGroupTag}`]);
    }
  }
  return encodeTextKeys(out);
}
