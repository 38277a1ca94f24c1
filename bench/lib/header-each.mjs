// Requests whose one header takes a new value each time (the next DPoP proof, the next client's
// credentials) at the load generator's cost of a fixed request.
//
// autocannon's `setupRequest` rebuilds a request's bytes from its parts for every request sent; on the
// 2-core machine that cost the load generator about 0.04 CPU ms per request, as much again as a fixed
// request costs it, and that CPU is taken from the server measured. Here the request is built once by
// autocannon as a fixed one, and each connection writes those bytes with the header's next value put
// in before the blank line that ends the head.

const EACH = Symbol('header each request');

/**
 * `request` (an autocannon request without `setupRequest` and without a `name` header) whose every
 * sending carries `name: next()`. autocannon ignores the mark; {@link setupClientFor} reads it.
 */
export function withHeaderEach(request, name, next) {
  if (Object.keys(request.headers ?? {}).some((h) => h.toLowerCase() === name.toLowerCase())) {
    throw new Error(`the request already has a ${name} header`);
  }
  return { ...request, [EACH]: { line: (value) => Buffer.from(`${name}: ${value}\r\n`, 'latin1'), next } };
}

/**
 * The autocannon `setupClient` option that sends `requests` as {@link withHeaderEach} marked them;
 * undefined when none is marked. Only a single marked request is supported (a scenario cycling
 * through several requests keeps `setupRequest`).
 */
export function setupClientFor(requests) {
  const marked = requests.filter((r) => r[EACH]);
  if (marked.length === 0) return undefined;
  if (requests.length !== 1) throw new Error('withHeaderEach: one request per scenario target');
  const { line, next } = marked[0][EACH];
  return (client) => {
    // autocannon 8 builds a request without setupRequest once, when the client is made.
    const built = client.requestIterator?.currentRequest?.requestBuffer;
    if (!Buffer.isBuffer(built)) throw new Error('withHeaderEach: autocannon did not build the request when the client was made');
    const end = built.indexOf('\r\n\r\n');
    if (end < 0) throw new Error('withHeaderEach: the built request has no end of head');
    const head = built.subarray(0, end + 2);
    const rest = built.subarray(end + 2);
    client.getRequestBuffer = () => Buffer.concat([head, line(next()), rest]);
  };
}

/** The next value of `values` on each call, round-robin (one counter for every connection). */
export function roundRobin(values) {
  let i = 0;
  return () => {
    const v = values[i];
    i = (i + 1) % values.length;
    return v;
  };
}
