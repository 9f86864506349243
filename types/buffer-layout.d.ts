// Local typings for buffer-layout 1.2 (the package ships none). Only what xcopyd uses.
declare module 'buffer-layout' {
  export class Layout<T = any> {
    span: number;
    property?: string;
    constructor(span: number, property?: string);
    decode(b: Buffer, offset?: number): T;
    encode(src: T, b: Buffer, offset?: number): number;
    getSpan(b?: Buffer, offset?: number): number;
    replicate(property: string): this;
  }
  export class Structure<T = any> extends Layout<T> {
    fields: Layout[];
    constructor(fields: Layout[], property?: string, decodePrefixes?: boolean);
  }
  export class BitStructure<T = any> extends Layout<T> {
    addField(bits: number, property: string): any;
    addBoolean(property: string): any;
  }
  export function struct<T = any>(fields: Layout[], property?: string, decodePrefixes?: boolean): Structure<T>;
  export function bits<T = any>(word: Layout<number>, msb?: boolean, property?: string): BitStructure<T>;
  export function u8(property?: string): Layout<number>;
  export function u16be(property?: string): Layout<number>;
  export function u24be(property?: string): Layout<number>;
  export function u32be(property?: string): Layout<number>;
  export function u48be(property?: string): Layout<number>;
  export function nu64be(property?: string): Layout<number>;
  export function u16(property?: string): Layout<number>;
  export function u32(property?: string): Layout<number>;
  export function blob(length: number | Layout<number>, property?: string): Layout<Buffer>;
  export function seq<T = any>(elementLayout: Layout<T>, count: number | Layout<number>, property?: string): Layout<T[]>;
  export function greedy(elementSpan?: number, property?: string): Layout<number>;
  export function offset(layout: Layout<number>, offset?: number, property?: string): Layout<number>;
  export function cstr(property?: string): Layout<string>;
  export function utf8(maxSpan?: number, property?: string): Layout<string>;
}
