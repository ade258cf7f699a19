import type { Request } from 'supertest';

/** A response body as text whatever its media type (supertest buffers only text/* and JSON itself): profiles, configs. */
export function asText(request: Request): Request {
  return request.buffer(true).parse((res, cb) => {
    let data = '';
    res.on('data', (c: Buffer) => (data += c.toString()));
    res.on('end', () => cb(null, data));
  });
}
