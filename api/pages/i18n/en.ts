import type { Language } from './types';

const plural = (count: number, one: string, many: string) => (count === 1 ? one : many);

/** English: ISO dates in UTC, the panel's own units. */
export const en: Language = {
  code: 'en',
  name: 'English',
  dir: 'ltr',
  numberLocale: 'en-US',
  byteUnits: ['B', 'KB', 'MB', 'GB', 'TB', 'PB'],
  formatDate: (date) => `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
  messages: {
    pageTitle: (username) => `${username} — subscription`,
    languageSwitch: 'Language',
    online: 'online',
    offline: 'offline',
    status: { active: 'Active', on_hold: 'On hold', limited: 'Data limit reached', expired: 'Expired', disabled: 'Disabled' },

    usage: 'Usage',
    usedOf: (used, limit) => `${used} used of ${limit}`,
    usedUnlimited: (used) => `${used} used of unlimited`,
    uploadDownload: (up, down) => `Upload ${up} · Download ${down}`,
    percentUsed: (p) => `${p}%`,
    usageBarLabel: 'Data used',

    expiry: 'Expiry',
    never: 'Never',
    startsAtFirstConnection: 'Starts at first connection',
    validForAfterStart: (days, n) => `then valid for ${days} ${plural(n, 'day', 'days')}`,
    daysLeft: (days, n) => `${days} ${plural(n, 'day', 'days')} left`,
    expiredOn: 'expired',
    timeZoneNote: '',

    nextSteps: {
      expired: {
        title: 'Your subscription has ended',
        text: 'To keep using the service, renew it with your provider. Once renewed, this page and the settings you already made work again as they are.',
      },
      limited: {
        title: 'You have used all the data in your plan',
        text: 'Buy more data, or wait until your plan resets. The settings you already made stay the same.',
      },
      disabled: { title: 'Your account is turned off', text: 'Contact support to find out why and to have it turned back on.' },
      on_hold: {
        title: 'Your subscription has not started yet',
        text: 'Its days are counted from your first connection: set up one of the methods below and connect.',
      },
    },
    supportContact: 'Support',
    noSupportContact: 'Contact the seller you bought this subscription from.',

    thisPage: 'Open this page on your phone',
    thisPageHint: "Scan with the phone's camera to open this page there, then set up the connection on the phone.",
    subscriptionLink: 'Subscription link',
    keepPrivate: 'Keep this link private: anyone who has it can use your account.',

    copy: 'Copy',
    copied: 'Copied',
    copyFailed: 'Select and copy by hand',
    copyLabel: (what) => `Copy ${what}`,

    username: 'Username',
    password: 'Password',
    servers: 'Servers',
    server: 'Server',
    fields: {
      psk: 'Pre-shared key (PSK)',
      address: 'Tunnel address',
      public_key: 'Public key',
      certificate_pin: 'Server certificate pin',
      ikev2_remote_id: 'IKEv2 remote ID (server identity)',
    },
    config: 'Configuration',
    download: (file) => `Download ${file}`,
    qrOf: {
      config: (app) => `Scan with the ${app} app to add this tunnel`,
      link: "Scan with the phone's camera to download this profile there",
      page: 'Scan to open this page on your phone',
    },
    qrAlt: (what) => `QR code: ${what}`,
    showQr: 'QR code',

    howToConnect: 'How to connect',
    apps: 'Apps',
    platforms: { android: 'Android', ios: 'iPhone / iPad', windows: 'Windows', macos: 'macOS', linux: 'Linux' },
    builtinApp: (type) => `Built-in VPN settings (type ${type})`,
    steps: {
      'import-profile': [
        'Install {app} (see the apps below).',
        "Download your profile above and open it with the app, or scan its QR code with the phone's camera to download it there.",
        'When the app asks, enter the username and password shown on this card.',
        'Tap Connect.',
      ],
      'scan-config': [
        'Install the {app} app.',
        'On a phone: tap +, choose “Scan from QR code” and scan a code above. On a computer: download the configuration and choose “Import tunnel(s) from file”.',
        'Turn the tunnel on.',
      ],
      'builtin-psk': [
        'Open your device’s VPN settings (Settings → VPN → Add VPN) and choose the type {app}.',
        'Server: one of the addresses above. Account and password: the username and password on this card. Pre-shared key (“secret”): the PSK on this card.',
        'Save, then connect.',
        'IKEv2 instead (Android 12 and later no longer offer {name}): choose the type IKEv2 (username and password, EAP), the same server, username and password, and the IKEv2 remote ID shown with the server’s profile; on Android the strongSwan app imports that profile directly.',
      ],
      'server-login': [
        'Install {app}.',
        'Add a connection and enter one of the server addresses above.',
        'Sign in with the username and password shown on this card.',
        'If the app warns about the server’s certificate, accept it only if it matches the certificate pin above. With openconnect: download the profile and run openconnect --config <file> <server>.',
      ],
    },

    noProtocols: 'No connection method is available for your account right now.',
    noServers: 'No server is available for this method right now.',

    notFoundTitle: 'This link does not work',
    notFoundText: 'It may be mistyped, or it was replaced by a new one. Ask your provider for your current subscription link.',
    unavailableTitle: 'This download is not available right now',
    unavailableText: 'The service behind it is not running at the moment. Try again later, or use another connection method on your subscription page.',
    errorTitle: 'Something went wrong',
    errorText: 'Please try again in a minute. If it keeps happening, contact support.',
    backToPage: 'Back to the subscription page',
  },
};
