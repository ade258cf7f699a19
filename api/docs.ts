import path from 'node:path';
import express from 'express';

/** Swagger UI from the installed `swagger-ui-dist` package: the docs page works offline. */
export function docsRouter(specUrl: string): express.Router {
  const r = express.Router();
  const assets = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  r.use('/assets', express.static(assets, { index: false, maxAge: '1h' }));
  r.get('/', (_req, res) => {
    res.type('html').send(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>polygate API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui', deepLinking: true, persistAuthorization: true });
</script>
</body>
</html>`);
  });
  return r;
}
