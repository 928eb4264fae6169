// Types for the parts of fuse-native (2.2.x, no bundled types) that Strata uses.
declare module 'fuse-native' {
  type Callback = (errno: number, ...results: unknown[]) => void;

  interface FuseOptions {
    readonly force?: boolean;
    readonly mkdir?: boolean;
    readonly timeout?: number | false | Record<string, number | false>;
    readonly debug?: boolean;
    readonly allowOther?: boolean;
    readonly autoCache?: boolean;
    readonly kernelCache?: boolean;
    readonly maxRead?: number;
    readonly fsname?: string;
    readonly subtype?: string;
    readonly attrTimeout?: number;
    readonly entryTimeout?: number;
    readonly defaultPermissions?: boolean;
  }

  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: never[]) => void>, opts?: FuseOptions);
    readonly mnt: string;
    readonly opts: FuseOptions;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    protected _fuseOptions(): string;
    protected _close(cb: (err: Error | null) => void): void;
    protected _thread: Buffer | null;
    static readonly ENOENT: number;
  }

  export = Fuse;
}
