import { en } from './en';
import { fa } from './fa';
import type { Language } from './types';

export type { Language, Messages } from './types';

/** Every language the pages speak; the first is the default when nothing else matches. */
export const LANGUAGES: readonly Language[] = [en, fa];

const byCode = new Map(LANGUAGES.map((l) => [l.code, l]));

/**
 * `?lang=` when it names a language we have (the visible switch), else the best match of
 * `Accept-Language` by quality (a region such as `fa-IR` counts as its language), else the default.
 */
export function pickLanguage(query: unknown, acceptLanguage: string | undefined): Language {
  if (typeof query === 'string' && byCode.has(query)) return byCode.get(query)!;
  let best: { lang: Language; q: number } | null = null;
  for (const part of (acceptLanguage ?? '').slice(0, 500).split(',')) {
    const [tag, ...params] = part.trim().split(';');
    const lang = byCode.get((tag ?? '').toLowerCase().split('-')[0]!);
    if (!lang) continue;
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (Number.isFinite(q) && q > 0 && (!best || q > best.q)) best = { lang, q };
  }
  return best?.lang ?? LANGUAGES[0]!;
}

/** Bytes in the language's units and digits (powers of 1024, as `data_limit_unit` counts them). */
export function formatBytes(lang: Language, bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return `${formatNumber(lang, 0)} ${lang.byteUnits[0]}`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < lang.byteUnits.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${formatNumber(lang, value, digits)} ${lang.byteUnits[unit]}`;
}

/** Building an Intl formatter costs far more than using one: one per locale and precision. */
const numberFormats = new Map<string, Intl.NumberFormat>();

export function formatNumber(lang: Language, value: number, fractionDigits = 0): string {
  const key = `${lang.numberLocale}:${fractionDigits}`;
  let format = numberFormats.get(key);
  if (!format) {
    format = new Intl.NumberFormat(lang.numberLocale, { minimumFractionDigits: fractionDigits, maximumFractionDigits: fractionDigits, useGrouping: false });
    numberFormats.set(key, format);
  }
  return format.format(value);
}

/** A data limit such as `10 GB` in the language's units (the contract's unit names map onto them). */
export function formatLimit(lang: Language, amount: number, unit: 'MB' | 'GB' | 'TB'): string {
  const index = { MB: 2, GB: 3, TB: 4 }[unit] ?? 3;
  return `${formatNumber(lang, amount, Number.isInteger(amount) ? 0 : 1)} ${lang.byteUnits[index]}`;
}
