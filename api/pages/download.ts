import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { sendRestError, toRestError } from '../errors';
import { resolveSubscription, sendNotFound, setPrivatePageHeaders, tokenOf, type PublicPagesScope } from './subscription';

export type { OpenVpnProfileSource } from '../../core/reconciler/profiles';

export const PROFILES_UNAVAILABLE_MESSAGE = 'OpenVPN profiles are not available: the OpenVPN plugin is not running on this server.';

const OVPN_SUFFIX = '.ovpn';

/** `GET /download/{username}/{name}.ovpn?token=…`: same token check as the page, then one profile. */
export async function downloadProfile(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const file = String(req.params.file ?? '');
  const endpointName = file.endsWith(OVPN_SUFFIX) ? file.slice(0, -OVPN_SUFFIX.length) : '';
  // Resolve even for a malformed file name, so every wrong link costs the same.
  const resolved = await resolveSubscription(services, String(req.params.username ?? ''), tokenOf(req), scope);
  if (!resolved || !endpointName || !resolved.openvpnEndpointNames.includes(endpointName)) return sendNotFound(req, res);

  setPrivatePageHeaders(res);
  // Without a running OpenVPN plugin the daemon sets no source: downloads say so.
  const source = services.openvpnProfiles;
  if (!source) {
    res.status(503).json({ success: false, message: PROFILES_UNAVAILABLE_MESSAGE });
    return;
  }
  let profile: string;
  try {
    profile = await source.renderProfile(resolved.info.username, endpointName);
  } catch (error) {
    sendRestError(res, toRestError(error, 'GET /download'));
    return;
  }
  res
    .status(200)
    .set({
      'Content-Type': 'application/x-openvpn-profile',
      // The name is one of our endpoint names ([a-z0-9_]), safe inside the quotes.
      'Content-Disposition': `attachment; filename="${endpointName}.ovpn"`,
    })
    .send(Buffer.from(profile, 'utf8'));
}
