import { Ajv, type ValidateFunction } from 'ajv';
import { BadRequestError } from '../core/errors.js';
import { ARRANGEMENTS, FILL_RULES } from '../core/layouts.js';

/**
 * The whole REST API as one OpenAPI 3.1 document, served at GET /v1/openapi.json. Request bodies
 * are validated against the same component schemas, so the document and the checks cannot drift.
 */
const id = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' };
const schemas = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } },
  },
  Region: {
    type: 'object',
    required: ['x', 'y', 'width', 'height'],
    additionalProperties: false,
    properties: {
      id,
      x: { type: 'number', minimum: 0, maximum: 1, description: 'Left edge, a fraction of the canvas width' },
      y: { type: 'number', minimum: 0, maximum: 1 },
      width: { type: 'number', minimum: 0.01, maximum: 1 },
      height: { type: 'number', minimum: 0.01, maximum: 1 },
      z: { type: 'integer', minimum: 0, maximum: 9, default: 0 },
      fill: { type: 'array', minItems: 1, items: { enum: [...FILL_RULES] }, default: ['rest'], description: 'Pools the region takes participants from, in order' },
      max: { type: 'integer', minimum: 1, maximum: 64, default: 64 },
      arrange: { enum: [...ARRANGEMENTS], default: 'grid' },
    },
  },
  Layout: {
    type: 'object',
    required: ['id', 'name', 'regions'],
    additionalProperties: false,
    properties: {
      id,
      name: { type: 'string', minLength: 1, maxLength: 100 },
      description: { type: 'string', maxLength: 1000 },
      regions: { type: 'array', minItems: 1, maxItems: 16, items: { $ref: '#/components/schemas/Region' } },
      maxTiles: { type: 'integer', minimum: 1, maximum: 64, default: 16 },
      overflow: { enum: ['hide', 'count'], default: 'hide' },
      gap: { type: 'integer', minimum: 0, maximum: 64, default: 4 },
    },
  },
  RoomLayoutRequest: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { layout: id, selfView: { type: 'boolean' } },
  },
  ViewerLayoutRequest: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: {
      layout: { type: ['string', 'null'], pattern: id.pattern },
      selfView: { type: ['boolean', 'null'] },
      pin: { type: ['string', 'null'], minLength: 1, maxLength: 64 },
    },
  },
  PinRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['participantId'],
    properties: { participantId: { type: ['string', 'null'], minLength: 1, maxLength: 64 } },
  },
  RecordingRequest: {
    type: 'object',
    additionalProperties: false,
    properties: {
      layout: id,
      format: { enum: ['webm', 'mp4'], default: 'webm', description: 'WebM: VP8 + Opus. MP4: H.264 + AAC (fragmented).' },
      width: { type: 'integer', minimum: 160, maximum: 1920, multipleOf: 2, default: 1280 },
      height: { type: 'integer', minimum: 90, maximum: 1080, multipleOf: 2, default: 720 },
      fps: { type: 'integer', minimum: 1, maximum: 60, default: 30 },
    },
  },
  RecordingLayoutRequest: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { layout: { type: ['string', 'null'], pattern: id.pattern }, pin: { type: ['string', 'null'], minLength: 1, maxLength: 64 } },
  },
  OutputRequest: {
    type: 'object',
    additionalProperties: false,
    description: 'The most this viewer receives; a field left out (or null) is not limited. The server keeps its canvas shape, and the offer’s b=TIAS/b=AS and H.264 level limit it too.',
    properties: {
      maxWidth: { type: ['integer', 'null'], minimum: 64, maximum: 3840 },
      maxHeight: { type: ['integer', 'null'], minimum: 64, maximum: 2160 },
      maxFps: { type: ['integer', 'null'], minimum: 1, maximum: 60 },
      maxBitrate: { type: ['integer', 'null'], minimum: 30000, maximum: 20000000, description: 'bits/s' },
    },
  },
  TokenRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['room'],
    properties: {
      room: { type: 'string', pattern: '^([A-Za-z0-9_-]{1,64}|\\*)$', description: 'The room the token is for, or "*" for every room' },
      name: { type: 'string', minLength: 1, maxLength: 64, description: 'The participant’s name; it overrides ?name= at join' },
      role: {
        enum: ['participant', 'viewer', 'moderator', 'admin'],
        default: 'participant',
        description: 'participant: joins, sends and receives. viewer: joins and receives only. moderator: joins and runs the room (layouts, pins, removals, recordings). admin: runs the room without joining.',
      },
      ttlSeconds: { type: 'integer', minimum: 1, maximum: 2592000, default: 21600 },
    },
  },
  RtpLegRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['codec'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 64 },
      codec: { enum: ['pcmu', 'pcma', 'g722', 'opus'], description: 'The one codec of the leg, both ways' },
      payloadType: { type: 'integer', minimum: 0, maximum: 127, description: 'Default: 0 (PCMU), 8 (PCMA), 9 (G.722), 111 (Opus)' },
      dtmfPayloadType: { type: 'integer', minimum: 96, maximum: 127, default: 101, description: 'RFC 4733 telephone-event (DTMF) received on this payload type' },
      remote: {
        type: 'object',
        additionalProperties: false,
        required: ['host', 'port'],
        properties: { host: { type: 'string', pattern: '^(25[0-5]|2[0-4]\\d|1?\\d?\\d)(\\.(25[0-5]|2[0-4]\\d|1?\\d?\\d)){3}$', description: 'IPv4' }, port: { type: 'integer', minimum: 1, maximum: 65535 } },
        description: 'Where to send RTP; without it, to wherever the leg’s first packet comes from',
      },
    },
  },
  RtpLeg: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      host: { type: 'string', description: 'Send the leg’s RTP here' },
      port: { type: 'integer' },
      codec: { type: 'string' },
      payloadType: { type: 'integer' },
    },
  },
  Token: {
    type: 'object',
    properties: { token: { type: 'string', description: 'A JWT (HS256) to send as Authorization: Bearer' }, expiresAt: { type: 'string' } },
  },
  CreateRoomRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['id'],
    properties: {
      id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
      layout: id,
      autoRecord: { oneOf: [{ type: 'boolean' }, { $ref: '#/components/schemas/RecordingRequest' }], description: 'Start recording as the room is created' },
    },
  },
  Recording: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      room: { type: 'string' },
      state: { enum: ['starting', 'recording', 'stopping', 'done', 'failed'] },
      format: { enum: ['webm', 'mp4'] },
      codecs: { type: 'object' },
      width: { type: 'integer' },
      height: { type: 'integer' },
      fps: { type: 'integer' },
      layout: { type: 'string' },
      startedAt: { type: ['string', 'null'] },
      stoppedAt: { type: ['string', 'null'] },
      durationS: { type: 'number' },
      sizeBytes: { type: ['integer', 'null'] },
      reason: { type: ['string', 'null'], description: 'Why it failed' },
      interrupted: {
        type: 'boolean',
        description: 'The server stopped without finalising it (crash, kill, power cut); the file plays up to its last second or so',
      },
      file: { type: 'string', description: 'Where to download it' },
    },
  },
  Tile: {
    type: 'object',
    properties: {
      participantId: { type: ['string', 'null'] },
      name: { type: 'string' },
      x: { type: 'integer' },
      y: { type: 'integer' },
      width: { type: 'integer' },
      height: { type: 'integer' },
      z: { type: 'integer' },
      source: { enum: ['video', 'placeholder', 'overflow'] },
    },
  },
  View: {
    type: 'object',
    properties: {
      width: { type: 'integer' },
      height: { type: 'integer' },
      layout: { type: 'string' },
      tiles: { type: 'array', items: { $ref: '#/components/schemas/Tile' } },
      overflow: { type: 'integer' },
    },
  },
  Participant: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      name: { type: 'string' },
      role: { enum: ['participant', 'publisher', 'viewer'] },
      joinedAt: { type: 'string', format: 'date-time' },
      connected: { type: 'boolean' },
      videoLive: { type: 'boolean' },
      screenshare: { type: 'boolean' },
      view: { type: ['object', 'null'] },
      media: { type: 'object' },
      stats: { type: 'object' },
    },
  },
  Room: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      layout: { type: 'string' },
      selfView: { type: 'boolean' },
      pin: { type: ['string', 'null'] },
      activeSpeaker: { type: ['string', 'null'] },
      encoders: { type: 'integer', description: 'Composite encoders in use (viewers with identical compositions share one)' },
      audio: {
        type: 'object',
        description: 'The mix: the talkers it carries now (the loudest, at most MCU_MIX_SPEAKERS), and the shared mix that every Opus listener outside them hears',
        properties: { mixed: { type: 'array', items: { type: 'string' } }, sharedMix: { type: 'boolean' }, sharedMixListeners: { type: 'integer' } },
      },
      participants: { type: 'array', items: { $ref: '#/components/schemas/Participant' } },
    },
  },
};

const limited = (description: string) => ({ ...err(description), headers: { 'Retry-After': { schema: { type: 'integer' } } } });
const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const json = (ref: string, description = 'OK') => ({ description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const body = (ref: string) => ({ required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const p = (name: string, description: string) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description });
const room = p('room', 'Room id: 1-64 letters, digits, "_" or "-"');
const participant = p('id', 'Participant id (from the Location of the join)');

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'WebRTC MCU',
    version: '0.1.0',
    description:
      'Rooms, WHIP joins, per-viewer layouts. Every route needs `Authorization: Bearer` with the API key or a join token (a JWT, see POST /v1/tokens): ' +
      'a join needs a token for the room with roomJoin; a participant’s own resource needs the token it joined with; everything else needs the API key ' +
      'or a token with roomAdmin (roomRecord for recordings). 401: no valid credential. 403: outside its grants.',
  },
  security: [{ bearer: [] }],
  paths: {
    '/v1/tokens': {
      post: { summary: 'Make a join token (admin)', requestBody: body('TokenRequest'), responses: { 201: json('Token'), 400: err('Bad body'), 401: err('No valid credential'), 403: err('Not an admin') } },
    },
    '/v1/rooms/{room}/rtp-legs': {
      post: {
        summary: 'An SDP-less plain RTP leg (admin), for media gateways that do not negotiate (Asterisk externalMedia): one audio codec, symmetric RTP. Leave with DELETE /v1/rooms/{room}/participants/{id}',
        parameters: [room],
        requestBody: body('RtpLegRequest'),
        responses: { 201: json('RtpLeg'), 400: err('Bad body'), 401: err('No valid credential'), 403: err('Not an admin') },
      },
    },
    '/v1/nodes': {
      get: { summary: 'The cluster’s nodes as Redis has them (MCU_REDIS_URL only): URL, ICE addresses, load, capacity, rooms, draining', responses: { 200: { description: 'OK' }, 404: err('Not a cluster') } },
    },
    '/v1/rooms': {
      get: {
        summary: 'Every room with its participants; in a cluster, every node’s',
        parameters: [{ name: 'scope', in: 'query', schema: { enum: ['node'] }, description: 'In a cluster: this node’s rooms only' }],
        responses: { 200: { description: 'OK' } },
      },
      post: { summary: 'Create an empty room, optionally recording from the start', requestBody: body('CreateRoomRequest'), responses: { 201: json('Room'), 400: err('Bad body'), 409: err('Exists') } },
    },
    '/v1/rooms/{room}': { get: { summary: 'One room', parameters: [room], responses: { 200: json('Room'), 404: err('Unknown room') } } },
    '/v1/rooms/{room}/participants': {
      options: {
        summary: 'WHIP: the ICE servers to use before making an offer (RFC 9725 4.6), as Link headers with TURN credentials of the caller’s own (MCU_TURN_URLS)',
        parameters: [room],
        responses: { 204: { description: 'Link: <turn:…>; rel="ice-server"; username=…; credential=…', headers: { Link: { schema: { type: 'string' } } } }, 401: err('No valid credential'), 403: err('Not for this room') },
      },
      post: {
        summary: 'Join (WHIP, RFC 9725): an SDP offer in, the SDP answer out, non-trickle',
        parameters: [
          room,
          { name: 'name', in: 'query', schema: { type: 'string', maxLength: 64 } },
          { name: 'screenshare', in: 'query', schema: { type: 'boolean' }, description: 'This peer’s video is a screen share' },
          { name: 'maxWidth', in: 'query', schema: { type: 'integer', minimum: 64, maximum: 3840 }, description: 'The widest video this viewer receives' },
          { name: 'maxHeight', in: 'query', schema: { type: 'integer', minimum: 64, maximum: 2160 } },
          { name: 'maxFps', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 60 } },
          { name: 'maxBitrate', in: 'query', schema: { type: 'integer', minimum: 30000, maximum: 20000000 }, description: 'bits/s' },
        ],
        requestBody: { required: true, content: { 'application/sdp': { schema: { type: 'string' } } } },
        responses: {
          201: { description: 'Joined', headers: { Location: { schema: { type: 'string' } } }, content: { 'application/sdp': { schema: { type: 'string' } } } },
          307: { description: 'In a cluster: the room is on another node; send the same request there (with the credential)', headers: { Location: { schema: { type: 'string' } } } },
          400: err('Malformed SDP, empty body, bad name or room id'),
          401: err('No valid credential'),
          403: err('The token is not for this room, or cannot join'),
          409: err('The room is full (MCU_MAX_PARTICIPANTS)'),
          413: err('Body too large'),
          415: err('Not application/sdp, or no common codec'),
          429: limited('Too many joins from this address (MCU_JOINS_PER_SECOND)'),
          503: limited('This node is at capacity: CPU (MCU_CPU_BUDGET) or rooms (MCU_MAX_ROOMS); try again after Retry-After'),
        },
      },
    },
    '/v1/rooms/{room}/participants/{id}': {
      get: { summary: 'One participant', parameters: [room, participant], responses: { 200: json('Participant'), 404: err('Unknown room or participant') } },
      delete: { summary: 'Leave', parameters: [room, participant], responses: { 204: { description: 'Left' }, 404: err('Unknown room or participant') } },
      patch: { summary: 'Trickle ICE: not supported (the answer carries every candidate)', parameters: [room, participant], responses: { 405: err('Not allowed') } },
    },
    '/v1/rooms/{room}/participants/{id}/view': {
      get: { summary: 'The exact composition this participant receives now', parameters: [room, participant], responses: { 200: json('View'), 404: err('Unknown'), 409: err('Receives no video') } },
    },
    '/v1/rooms/{room}/layout': {
      put: { summary: 'Room default layout and self-view', parameters: [room], requestBody: body('RoomLayoutRequest'), responses: { 200: json('Room'), 400: err('Bad body'), 404: err('Unknown room or layout') } },
    },
    '/v1/rooms/{room}/participants/{id}/layout': {
      put: {
        summary: 'One viewer’s own layout, self-view and pin (null clears one)',
        parameters: [room, participant],
        requestBody: body('ViewerLayoutRequest'),
        responses: { 200: json('Participant'), 400: err('Bad body'), 404: err('Unknown room, participant or layout'), 409: err('Receives no video') },
      },
      delete: { summary: 'Return this viewer to the room default', parameters: [room, participant], responses: { 204: { description: 'Done' }, 404: err('Unknown') } },
    },
    '/v1/rooms/{room}/pin': {
      put: { summary: 'Pin a participant to the main region for the whole room', parameters: [room], requestBody: body('PinRequest'), responses: { 200: json('Room'), 400: err('Bad body'), 404: err('Unknown') } },
      delete: { summary: 'Unpin', parameters: [room], responses: { 204: { description: 'Done' }, 404: err('Unknown room') } },
    },
    '/v1/rooms/{room}/participants/{id}/output': {
      put: {
        summary: 'What this viewer receives at most (size, frame rate, bitrate); it moves to a composite of that size at its next keyframe',
        parameters: [room, participant],
        requestBody: body('OutputRequest'),
        responses: { 200: json('Participant'), 400: err('Bad body'), 404: err('Unknown'), 409: err('Receives no video') },
      },
    },
    '/v1/rooms/{room}/participants/{id}/pin': {
      put: { summary: 'Pin for one viewer', parameters: [room, participant], requestBody: body('PinRequest'), responses: { 200: json('Participant'), 400: err('Bad body'), 404: err('Unknown') } },
      delete: { summary: 'Unpin for one viewer', parameters: [room, participant], responses: { 204: { description: 'Done' }, 404: err('Unknown') } },
    },
    '/v1/rooms/{room}/recordings': {
      post: {
        summary: 'Start recording the room (its own view of everyone; defaults: grid, 1280x720, 30 fps, WebM)',
        parameters: [room],
        requestBody: body('RecordingRequest'),
        responses: { 201: json('Recording', 'Started (or failed at once, with the reason)'), 400: err('Bad body'), 404: err('Unknown room or layout') },
      },
    },
    '/v1/rooms/{room}/recordings/{rec}/stop': {
      post: { summary: 'Stop and finalise the file', parameters: [room, p('rec', 'Recording id')], responses: { 200: json('Recording'), 404: err('Unknown') } },
    },
    '/v1/rooms/{room}/recordings/{rec}/layout': {
      put: { summary: 'Change a running recording’s layout or pin, as for a viewer', parameters: [room, p('rec', 'Recording id')], requestBody: body('RecordingLayoutRequest'), responses: { 200: json('Recording'), 400: err('Bad body'), 404: err('Unknown') } },
    },
    '/v1/recordings': {
      get: {
        summary: 'Every recording (a room token: its room’s); in a cluster, every node’s',
        parameters: [{ name: 'scope', in: 'query', schema: { enum: ['node'] }, description: 'In a cluster: this node’s recordings only' }],
        responses: { 200: { description: 'OK' } },
      },
    },
    '/v1/recordings/{rec}': {
      get: { summary: 'One recording: state, times, duration, size, format', parameters: [p('rec', 'Recording id')], responses: { 200: json('Recording'), 404: err('Unknown') } },
      delete: { summary: 'Delete a finished recording and its file', parameters: [p('rec', 'Recording id')], responses: { 204: { description: 'Deleted' }, 404: err('Unknown'), 409: err('Still recording') } },
    },
    '/v1/recordings/{rec}/file': {
      get: { summary: 'Download the file (HTTP Range supported)', parameters: [p('rec', 'Recording id')], responses: { 200: { description: 'The file' }, 206: { description: 'A range of it' }, 404: err('Unknown') } },
    },
    '/v1/layouts': { get: { summary: 'Every layout', responses: { 200: { description: 'OK' } } } },
    '/v1/layouts/{layout}': {
      get: { summary: 'One layout', parameters: [p('layout', 'Layout id')], responses: { 200: json('Layout'), 404: err('Unknown layout') } },
      put: {
        summary: 'Create or replace a custom layout',
        parameters: [p('layout', 'Layout id')],
        requestBody: body('Layout'),
        responses: { 200: json('Layout', 'Replaced'), 201: json('Layout', 'Created'), 400: err('Invalid layout; the message names the field'), 409: err('Built-in layout') },
      },
      delete: { summary: 'Delete a custom layout', parameters: [p('layout', 'Layout id')], responses: { 204: { description: 'Deleted' }, 404: err('Unknown'), 409: err('Built-in layout') } },
    },
    '/v1/openapi.json': { get: { summary: 'This document (no credentials needed)', security: [], responses: { 200: { description: 'OK' } } } },
  },
  components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'The API key (MCU_API_KEY) or a join token' } } },
};

const ajv = new Ajv({ strict: false, allErrors: false, useDefaults: false });
ajv.addSchema({ $id: 'mcu', components: { schemas } });
const validators = new Map<string, ValidateFunction>();

/** Checks `value` against a component schema; a 400 names the first offending field. */
export function validateBody<T>(schema: keyof typeof schemas, value: unknown): T {
  let v = validators.get(schema);
  if (!v) {
    v = ajv.compile({ $ref: `mcu#/components/schemas/${schema}` });
    validators.set(schema, v);
  }
  if (!v(value)) {
    const e = v.errors![0];
    const field = e.instancePath
      ? e.instancePath.slice(1).replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.')
      : e.keyword === 'additionalProperties'
        ? String((e.params as { additionalProperty: string }).additionalProperty)
        : e.keyword === 'required'
          ? String((e.params as { missingProperty: string }).missingProperty)
          : '(body)';
    const what = e.keyword === 'additionalProperties' ? 'is not allowed here' : e.keyword === 'required' ? 'is required' : e.message;
    throw new BadRequestError(`field "${field}" ${what}`, 'invalid_body');
  }
  return value as T;
}
