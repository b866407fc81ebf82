import { InvalidArgumentError } from '../errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

/** Image names are local handles (`app`, `python:3.12`); they never become host paths. */
export function validateImageName(name: string): string {
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(
      `invalid image name "${name}": use letters, digits, '.', '_' and '-' (optionally ':tag'), starting with a letter or digit, at most 128 characters each`,
    );
  }
  return name;
}

/** The name an image gets when none is given: `python:3.12` for `docker.io/library/python:3.12`. */
export function defaultImageName(repository: string, tag?: string, digest?: string): string {
  const last = repository.slice(repository.lastIndexOf('/') + 1);
  if (tag) return `${last}:${tag}`;
  if (digest) return `${last}:${digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13)}`;
  return `${last}:latest`;
}

/** Names to try when looking one up: `app` also finds `app:latest`, as docker users expect. */
export function lookupCandidates(name: string): string[] {
  return name.includes(':') ? [name] : [name, `${name}:latest`];
}
