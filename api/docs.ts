import path from 'node:path';
import express from 'express';

/**
 * The files of `swagger-ui-dist` the page below loads, and nothing else: the package also holds
 * the stock Swagger UI (`index.html`, `swagger-initializer.js`, pointing at a public demo site),
 * its `package.json` and source maps, none of which a panel should serve.
 */
export const DOCS_ASSETS = ['swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png'] as const;

/** Swagger UI from the installed `swagger-ui-dist` package: the docs page works offline. */
export function docsRouter(specUrl: string): express.Router {
  const r = express.Router();
  const dir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  for (const file of DOCS_ASSETS) {
    r.get(`/assets/${file}`, (_req, res) => {
      res.sendFile(path.join(dir, file), { maxAge: '1h' });
    });
  }
  r.get('/', (_req, res) => {
    res.type('html').send(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>polygate API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui', deepLinking: true, persistAuthorization: true, validatorUrl: null });
</script>
</body>
</html>`);
  });
  return r;
}
