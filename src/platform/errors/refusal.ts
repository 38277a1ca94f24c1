/**
 * Stack capture switched off for the construction of a refusal (a 4xx answer). A refusal is an
 * expected outcome that the error handler renders and never logs, so its stack is never read;
 * capturing one walks the call stack and was the largest single cost of answering a flood of bad
 * credentials. 5xx errors keep their stacks: the handler logs them.
 *
 * Call `begin(status)` as the statement before `super(message)` and `end(saved)` after it.
 */
export const refusalStack = {
  begin(statusCode: number): number {
    const saved = Error.stackTraceLimit;
    if (statusCode < 500) Error.stackTraceLimit = 0;
    return saved;
  },
  end(saved: number): void {
    Error.stackTraceLimit = saved;
  },
};
