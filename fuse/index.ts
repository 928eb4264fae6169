export { Filesystem, versionedMtime, type FileStat, type FilesystemConfig, type FsStatistics } from './filesystem.js';
export { FsError, type FsErrorCode } from './fs-error.js';
export { ERRNO_BY_CODE, errnoOf } from './errno.js';
export { FuseMount, FuseUnavailableError, type FuseMountInfo, type FuseMountOptions, type FusePath, type FusePathChoice } from './fuse-mount.js';
export { MountPointError, isMountPoint, mountEntries, mountedFsType, prepareMountPoint, type MountEntry, unmountPath, DEFAULT_UNMOUNT_POLICY, type UnmountPolicy } from './mount-point.js';
export { trimFuseRequestBuffers } from './native-session.js';
