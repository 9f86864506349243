/**
 * A guided fuzz target: bytes in, the oracle's verdict out. Each target
 * decodes its own structure from the bytes (Bytes below, the part of
 * libFuzzer's FuzzedDataProvider we need: reads past the end give zeros),
 * runs the project's real parser or the command through ScsiDevice.execute,
 * and returns null for an allowed outcome (success, a SCSI sense, a login
 * reject, a framing error that closes the connection) or a description of
 * what broke (any other exception, a wrong status, an invariant).
 */
import type fc from 'fast-check';

export interface FuzzTarget {
  name: string;
  /** Project-relative directories whose coverage guides (default iscsi/, scsi/, src/). */
  coverage?: string[];
  /** Inputs longer than this are cut. */
  maxLen: number;
  /** Tokens the mutator inserts (key names, opcodes, designators). */
  dict?: Buffer[];
  /** Built-in seeds (valid inputs, and the JSON corpus of the fast-check suites converted). */
  seeds(): Buffer[] | Promise<Buffer[]>;
  /** Structured inputs from fast-check, mixed in now and then. */
  generate?: fc.Arbitrary<Buffer>;
  /** Share of inputs taken from `generate` instead of mutation (default 0.05). */
  generateRate?: number;
  run(input: Buffer): Promise<string | null> | string | null;
}

export class Bytes {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  get left(): number {
    return Math.max(0, this.b.length - this.at);
  }
  u8(): number {
    return this.at < this.b.length ? this.b[this.at++] : (this.at++, 0);
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u32(): number {
    return ((this.u16() << 16) | this.u16()) >>> 0;
  }
  take(n: number): Buffer {
    const s = this.b.subarray(Math.min(this.at, this.b.length), Math.min(this.at + n, this.b.length));
    this.at += n;
    return s;
  }
  rest(): Buffer {
    return this.take(this.left);
  }
}

/** Writers for the same layouts, for seeds. */
export const u8 = (n: number): Buffer => Buffer.from([n & 0xff]);
export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
};
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
