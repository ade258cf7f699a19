import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { sendRestError, toRestError } from '../errors';
import { isBrowser, resolveToken, sendErrorPage, sendNotFound, setPrivatePageHeaders, tokenOf, type PublicPagesScope } from './subscription';

/** A file name we make ourselves: an endpoint name and an extension, `[a-z0-9_]+.[a-z0-9]+`. */
const FILE_NAME = /^[A-Za-z0-9_]{1,80}\.[a-z0-9]{1,10}$/;

/**
 * `GET /download/{username}/{file}?token=…` (`main_udp.ovpn`, `main_wireguard.conf`): same token
 * check as the page, then one client config rendered by the plugin that runs it. A browser
 * that meets a failure gets a page in its language; scripts keep the JSON envelope.
 */
export async function downloadProfile(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const file = String(req.params.file ?? '');
  // Resolve even for a malformed file name, so every wrong link costs the same.
  const sub = await resolveToken(services, String(req.params.username ?? ''), tokenOf(req), scope);
  const named = (c: { endpoint: { name: string }; extension: string }) => `${c.endpoint.name}.${c.extension}` === file;
  if (!sub || !FILE_NAME.test(file) || !(sub.clientConfigs.some(named) || sub.unavailableConfigs.some(named))) {
    if (isBrowser(req)) return sendErrorPage(req, res, 404, 'not_found');
    return sendNotFound(req, res);
  }

  let rendered;
  try {
    rendered = await services.clientConfigs.render(sub, file);
  } catch (error) {
    const rest = toRestError(error, 'GET /download');
    if (isBrowser(req)) {
      const kind = rest.status === 503 ? 'unavailable' : 'error';
      for (const [name, value] of Object.entries(rest.headers ?? {})) res.setHeader(name, value);
      const supportContact = await services.settings.supportContactFor(sub.detail.sub_admin_id).catch(() => null);
      const back = new URL(sub.detail.subscription_url);
      return sendErrorPage(req, res, rest.status, kind, { backHref: `${back.pathname}${back.search}`, supportContact });
    }
    setPrivatePageHeaders(res);
    sendRestError(res, rest);
    return;
  }
  setPrivatePageHeaders(res);
  res
    .status(200)
    .set({
      'Content-Type': rendered.mediaType,
      // The name matched FILE_NAME, safe inside the quotes.
      'Content-Disposition': `attachment; filename="${rendered.fileName}"`,
    })
    .send(Buffer.from(rendered.content, 'utf8'));
}
