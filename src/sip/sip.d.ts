// Types for the parts of `sip` (kirm/sip.js 0.0.6, plain CommonJS without declarations) that
// src/sip/bridge.ts uses.
declare module 'sip' {
  export interface SipUri {
    schema?: string;
    user?: string;
    password?: string;
    host: string;
    port?: number;
    params: Record<string, string | null>;
    headers?: Record<string, string>;
  }
  export interface NameAddr {
    name?: string;
    /** A string as parsed for To/From/Contact; an object for Route/Record-Route. */
    uri: string | SipUri;
    params: Record<string, string | null>;
  }
  export interface Via {
    version?: string;
    protocol?: string;
    host?: string;
    port?: number;
    params: Record<string, string | null>;
  }
  export interface Headers {
    via?: Via[];
    to?: NameAddr;
    from?: NameAddr;
    'call-id'?: string;
    cseq?: { seq: number; method: string };
    contact?: NameAddr[] | '*';
    route?: NameAddr[];
    'record-route'?: NameAddr[];
    'content-type'?: string;
    'content-length'?: number;
    'max-forwards'?: number | string;
    [name: string]: unknown;
  }
  export interface SipMessage {
    method?: string;
    uri?: string | SipUri;
    status?: number;
    reason?: string;
    version?: string;
    headers: Headers;
    content?: string;
  }
  export interface SipRequest extends SipMessage {
    method: string;
    uri: string | SipUri;
  }
  export interface SipResponse extends SipMessage {
    status: number;
    reason: string;
  }
  export interface Remote {
    protocol: string;
    address: string;
    port: number;
    local?: { address: string; port: number };
  }
  export interface StackOptions {
    port?: number;
    address?: string;
    publicAddress?: string;
    hostname?: string;
    udp?: boolean;
    tcp?: boolean;
    rport?: boolean;
    logger?: {
      send?(m: SipMessage, target: unknown): void;
      recv?(m: SipMessage, remote: Remote): void;
      error?(e: unknown): void;
    };
  }
  export interface Stack {
    /** Responses go through their server transaction; requests (but ACK) get a client transaction and `callback` gets its responses. */
    send(m: SipMessage, callback?: (rs: SipResponse) => void): void;
    hostname(): string;
    destroy(): void;
  }
  export function create(options: StackOptions, onRequest: (rq: SipRequest, remote: Remote) => void): Stack;
  export function makeResponse(rq: SipRequest, status: number, reason?: string, extension?: { headers?: Record<string, unknown>; content?: string }): SipResponse;
  export function parseUri(s: string | SipUri): SipUri | undefined;
  export function stringifyUri(uri: string | SipUri): string;
  export function generateBranch(): string;
  const sip: {
    create: typeof create;
    makeResponse: typeof makeResponse;
    parseUri: typeof parseUri;
    stringifyUri: typeof stringifyUri;
    generateBranch: typeof generateBranch;
  };
  export default sip;
}
