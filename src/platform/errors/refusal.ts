/**
 * The base of errors that carry an HTTP status (ApiError, OAuthError). A refusal (a 4xx) is made
 * without a stack: it is an expected outcome that the error handler renders and never logs, so its
 * stack is never read, and capturing one walks the call stack, the largest single cost of answering
 * a flood of bad credentials. A 5xx keeps its stack: the handler logs it. The process-wide
 * `Error.stackTraceLimit` is the same after construction as before.
 */
export class StatusError extends Error {
  constructor(statusCode: number, message: string) {
    const saved = Error.stackTraceLimit;
    if (statusCode < 500) Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = saved;
  }
}
