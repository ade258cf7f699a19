import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { sendRestError, toRestError } from '../errors';
import { resolveSubscription, sendNotFound, setPrivatePageHeaders, tokenOf, type PublicPagesScope } from './subscription';

/** A file name we make ourselves: an endpoint name and an extension, `[a-z0-9_]+.[a-z0-9]+`. */
const FILE_NAME = /^[A-Za-z0-9_]{1,80}\.[a-z0-9]{1,10}$/;

/**
 * `GET /download/{username}/{file}?token=…` (`main_udp.ovpn`, `main_wireguard.conf`): same token
 * check as the page, then one client config rendered by the plugin that runs it.
 */
export async function downloadProfile(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const file = String(req.params.file ?? '');
  // Resolve even for a malformed file name, so every wrong link costs the same.
  const resolved = await resolveSubscription(services, String(req.params.username ?? ''), tokenOf(req), scope);
  const named = (c: { endpoint: { name: string }; extension: string }) => `${c.endpoint.name}.${c.extension}` === file;
  const sub = resolved?.subscription;
  if (!sub || !FILE_NAME.test(file) || !(sub.clientConfigs.some(named) || sub.unavailableConfigs.some(named))) return sendNotFound(req, res);

  setPrivatePageHeaders(res);
  let rendered;
  try {
    rendered = await services.clientConfigs.render(sub, file);
  } catch (error) {
    sendRestError(res, toRestError(error, 'GET /download'));
    return;
  }
  res
    .status(200)
    .set({
      'Content-Type': rendered.mediaType,
      // The name matched FILE_NAME, safe inside the quotes.
      'Content-Disposition': `attachment; filename="${rendered.fileName}"`,
    })
    .send(Buffer.from(rendered.content, 'utf8'));
}
