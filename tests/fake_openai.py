"""A small stand-in for the OpenAI embeddings endpoint on 127.0.0.1, for tests (no network).

`FakeOpenAI.failures` is a queue of what the next requests get instead of embeddings:
'429', '500', 'malformed' (invalid JSON), 'wrong_count' (one embedding too few), '401'.
"""
import hashlib
import http.server
import json
import threading

import numpy as np

DIMS = {'text-embedding-ada-002': 1536, 'text-embedding-3-small': 1536,
        'text-embedding-3-large': 3072}


def fake_embedding(model: str, text: str, dim: int) -> list[float]:
  seed = int.from_bytes(hashlib.sha256(f'{model}|{text}'.encode()).digest()[:8], 'little')
  vector = np.random.default_rng(seed).standard_normal(dim)
  return (vector / np.linalg.norm(vector)).tolist()


class FakeOpenAI:

  def __init__(self):
    self.failures: list[str] = []
    self.requests: list[dict] = []  # each: model, inputs, authorization header, dimensions
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        pass

      def _send(self, status: int, body: bytes, headers=()):
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        for key, value in headers:
          self.send_header(key, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        fake.requests.append(dict(model=body['model'], inputs=list(body['input']),
                                  authorization=self.headers.get('Authorization'),
                                  dimensions=body.get('dimensions'), path=self.path))
        failure = fake.failures.pop(0) if fake.failures else None
        error = lambda message: json.dumps({'error': {'message': message}}).encode()
        if failure == '429':
          return self._send(429, error('Rate limit reached'), [('Retry-After', '0')])
        if failure == '500':
          return self._send(500, error('The server had an error'))
        if failure == '401':
          return self._send(401, error('Incorrect API key provided'))
        if failure == 'malformed':
          return self._send(200, b'{"object": "list", "data": [{"embedding": [0.1, ')
        inputs = body['input'][:-1] if failure == 'wrong_count' else body['input']
        dim = body.get('dimensions') or DIMS[body['model']]
        data = [dict(object='embedding', index=i, embedding=fake_embedding(body['model'], t, dim))
                for i, t in enumerate(inputs)]
        usage = dict(prompt_tokens=len(inputs), total_tokens=len(inputs))
        self._send(200, json.dumps(dict(object='list', data=data, model=body['model'],
                                        usage=usage)).encode())

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.base_url = f'http://127.0.0.1:{self.server.server_address[1]}/v1'
    self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()
