/**
 * The namespace: which object a path of the mount names. `Namespace` answers lookups and
 * listings of one link's store (cached for `--metadata-ttl`, served stale through outages);
 * `MountRoutes` maps a mount path to the link that serves it and the key inside that link.
 */
export { Namespace, type DirectoryEntry, type NamespaceConfig, type NamespaceEntry } from './namespace.js';
export { compareNames, keyOfPath, normalisePath, parentOf, searchName } from './names.js';
export { NamespaceError, type NamespaceErrorCode } from './namespace-error.js';
export { MountRoutes, type Route, type RoutedLink } from './mount-routes.js';
