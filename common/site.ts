/**
 * Sites: where gateways are installed (twin tag `tags.fieldlink.site`, set by provisioning).
 * Pairing tokens are scoped to one, so whoever unpacks wearables at one site cannot pair them
 * with another site's gateways.
 */

/** Short and printable: it shows on labels, in the fleet view and in the audit log. */
export const SITE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

/** The site name, or a message saying what is wrong with it. */
export function siteProblem(value: string): string | undefined {
  return SITE_PATTERN.test(value) ? undefined : `site "${value}" must be 1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit`;
}
