/**
 * Typed errors that carry their HTTP status, so one express handler maps them all.
 * Anything that is not an McuError is a bug and becomes a 500.
 */
export class McuError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends McuError {
  constructor(message: string, code = 'bad_request') {
    super(400, code, message);
  }
}

export class UnsupportedMediaError extends McuError {
  constructor(message: string) {
    super(415, 'unsupported_media', message);
  }
}

export class NotFoundError extends McuError {
  constructor(message: string) {
    super(404, 'not_found', message);
  }
}

export class InvalidStateError extends McuError {
  constructor(message: string) {
    super(409, 'invalid_state', message);
  }
}

/** A GStreamer launch string that failed to parse or an element that could not be created. */
export class PipelineError extends McuError {
  constructor(
    message: string,
    readonly element?: string,
  ) {
    super(500, 'pipeline_error', message);
  }
}
