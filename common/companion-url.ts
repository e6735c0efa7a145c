/**
 * The cloud companion's public URL as field tools and the companion take it (provision
 * --companion-url, cloud --public-url, token create --link), and the pairing page's address on it.
 */
import { FieldlinkError } from './errors.js';

/**
 * Checks an http(s) URL without query or fragment and returns its origin and path without a
 * trailing slash; credentials in it are dropped (they would end up printed on labels). `flag`
 * names the option in the messages.
 */
export function companionBaseUrl(value: string, flag: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new FieldlinkError('CONFIG_INVALID', { message: `${flag} "${value}" is not a URL (e.g. https://fieldlink.example.com)` });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new FieldlinkError('CONFIG_INVALID', { message: `${flag} must be an https:// (or, on a trusted network, http://) URL, got ${url.protocol}` });
  if (url.search !== '' || url.hash !== '') throw new FieldlinkError('CONFIG_INVALID', { message: `${flag} takes no query or fragment` });
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** The pairing page with `params` in its fragment: browsers never send a fragment to a server. */
export function pairPageUrl(base: string, params: string): string {
  return `${base}/pair#${params}`;
}
