#!/usr/bin/python3
"""
lazyfs.py: a FUSE file system for power-cut tests that keeps everything not yet
fsynced in this process's memory, as a page cache would, and only what was
fsynced in the directory underneath. A power cut is SIGKILL of this process
(its memory is the volatile layer); the underlying directory then holds the
durable state and nothing else.

    /usr/bin/python3 lazyfs.py UNDER MOUNTPOINT      (root, /dev/fuse; Debian: python3-fusepy)

Prints "lazyfs ready" once mounted. After a cut: umount -l MOUNTPOINT and remove
UNDER/.lazyfs (the next mount does it too): what is left is what a disk would hold.

The durability model, stricter than ext4's journal but what POSIX promises:
  - file data and size: written to the file in UNDER only by fsync/fdatasync of
    that file (the whole file, as fdatasync does);
  - directory entries (create, rename, unlink, mkdir, rmdir): the live tree is
    in memory; fsync of a directory makes UNDER's copy of that directory hold
    exactly its live entries. A file that was fsynced but whose name was never
    made durable is an orphan, gone after the cut;
  - a file's durable data lives in UNDER/.lazyfs/ino-N, hard-linked under every
    durable name it has, so data and names become durable independently;
  - attributes other than mode and size are not kept; sockets and other special
    files live only in memory; fsync of a directory that has no durable name
    itself does nothing.
Reads bypass the kernel's page cache (direct_io) so after the cut nothing stale
can be served; every write and fsync reaches this process.
"""
import errno
import os
import shutil
import stat
import sys
import time

import fusepy
from fusepy import FUSE, FuseOSError, Operations

PAGE = 4096
META = '.lazyfs'


class File:
    def __init__(self, ino, mode, backing, size):
        self.ino = ino
        self.mode = mode
        self.backing = backing  # UNDER/.lazyfs/ino-N: the durable data
        self.fd = None
        self.size = size  # live size
        self.floor = size  # durable bytes at or past this offset are stale (a truncate)
        self.pages = {}  # page index -> bytearray(PAGE): written, not fsynced
        self.nlink = 1
        self.mtime = time.time()

    def bfd(self):
        if self.fd is None:
            self.fd = os.open(self.backing, os.O_RDWR)
        return self.fd


class Dir:
    def __init__(self, ino, mode, dur):
        self.ino = ino
        self.mode = mode
        self.dur = dur  # its path relative to UNDER, or None when it has no durable name
        self.children = {}
        self.mtime = time.time()


class Special:
    def __init__(self, ino, mode, rdev):
        self.ino = ino
        self.mode = mode
        self.rdev = rdev
        self.nlink = 1
        self.mtime = time.time()


class LazyFS(Operations):
    def __init__(self, under):
        self.under = os.path.abspath(under)
        self.meta = os.path.join(self.under, META)
        shutil.rmtree(self.meta, ignore_errors=True)  # orphans of the last life (fsck)
        os.mkdir(self.meta, 0o700)
        self.next_ino = 2
        self.dirs = []
        self.handles = {}
        self.next_fh = 1
        self.root = Dir(1, stat.S_IFDIR | 0o755, '')
        self.dirs.append(self.root)
        self.scan(self.root)

    # ---- the tree ----

    def new_ino(self):
        ino = self.next_ino
        self.next_ino += 1
        return ino

    def backing_for(self, ino):
        return os.path.join(self.meta, 'ino-%d' % ino)

    def scan(self, d):
        base = os.path.join(self.under, d.dur)
        for name in sorted(os.listdir(base)):
            if d is self.root and name == META:
                continue
            p = os.path.join(base, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                c = Dir(self.new_ino(), st.st_mode, os.path.join(d.dur, name))
                self.dirs.append(c)
                d.children[name] = c
                self.scan(c)
            elif stat.S_ISREG(st.st_mode):
                f = File(self.new_ino(), st.st_mode, None, st.st_size)
                f.backing = self.backing_for(f.ino)
                os.link(p, f.backing)
                d.children[name] = f
            # anything else in UNDER is ignored

    def lookup(self, path):
        node = self.root
        for part in path.split('/'):
            if not part:
                continue
            if not isinstance(node, Dir) or part not in node.children:
                raise FuseOSError(errno.ENOENT)
            node = node.children[part]
        return node

    def parent(self, path):
        head, name = os.path.split(path.rstrip('/'))
        d = self.lookup(head)
        if not isinstance(d, Dir):
            raise FuseOSError(errno.ENOTDIR)
        return d, name

    def node_of(self, path, fh):
        if fh and fh in self.handles:
            return self.handles[fh]
        return self.lookup(path)

    def open_handle(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    # ---- file data: durable bytes below floor, overlaid by dirty pages ----

    def view(self, f, offset, length):
        end = min(offset + length, f.size)
        if end <= offset:
            return b''
        out = bytearray(end - offset)
        dend = min(end, f.floor)
        if dend > offset:
            got = os.pread(f.bfd(), dend - offset, offset)
            out[0:len(got)] = got
        first, last = offset // PAGE, (end - 1) // PAGE
        if f.pages:
            for idx in range(first, last + 1):
                pg = f.pages.get(idx)
                if pg is None:
                    continue
                ps = idx * PAGE
                a, b = max(ps, offset), min(ps + PAGE, end)
                out[a - offset:b - offset] = pg[a - ps:b - ps]
        return bytes(out)

    def put(self, f, data, offset):
        pos, n = offset, len(data)
        end = offset + n
        while pos < end:
            idx = pos // PAGE
            ps = idx * PAGE
            pg = f.pages.get(idx)
            if pg is None:
                pg = bytearray(PAGE)
                old = self.view(f, ps, PAGE)
                pg[0:len(old)] = old
                f.pages[idx] = pg
            b = min(ps + PAGE, end)
            pg[pos - ps:b - ps] = data[pos - offset:b - offset]
            pos = b
        f.size = max(f.size, end)
        f.mtime = time.time()
        return n

    def resize(self, f, length):
        if length < f.size:
            for idx in [i for i in f.pages if i * PAGE >= length]:
                del f.pages[idx]
            tail = f.pages.get(length // PAGE)
            if tail is not None:
                off = length % PAGE
                tail[off:] = bytes(PAGE - off)
            f.floor = min(f.floor, length)
        f.size = length
        f.mtime = time.time()

    def sync_file(self, f):
        fd = f.bfd()
        if os.fstat(fd).st_size > f.floor:
            os.ftruncate(fd, f.floor)
        for idx, pg in f.pages.items():
            ps = idx * PAGE
            n = min(PAGE, f.size - ps)
            if n > 0:
                os.pwrite(fd, bytes(pg[:n]), ps)
        os.ftruncate(fd, f.size)
        os.fchmod(fd, stat.S_IMODE(f.mode))
        f.pages = {}
        f.floor = f.size

    # ---- directory entries ----

    def reprefix(self, old, new):
        for d in self.dirs:
            if d.dur is not None and (d.dur == old or d.dur.startswith(old + '/')):
                d.dur = new + d.dur[len(old):]

    def evict(self, rel):
        """Remove a durable entry; a directory some live node still owns moves aside (an orphan)."""
        p = os.path.join(self.under, rel)
        if os.path.isdir(p) and not os.path.islink(p):
            owner = next((d for d in self.dirs if d.dur == rel), None)
            if owner is not None:
                aside = os.path.join(META, 'dir-%d' % owner.ino)
                os.rename(p, os.path.join(self.under, aside))
                self.reprefix(rel, aside)
            else:
                shutil.rmtree(p)
        else:
            os.unlink(p)

    def sync_dir(self, d):
        if d.dur is None:
            return
        base = os.path.join(self.under, d.dur)
        stale = set(os.listdir(base))
        if d is self.root:
            stale.discard(META)
        for name, c in d.children.items():
            rel = os.path.join(d.dur, name)
            target = os.path.join(self.under, rel)
            exists = os.path.lexists(target)
            if isinstance(c, File):
                stale.discard(name)
                if exists and not os.path.isdir(target) and os.lstat(target).st_ino == os.stat(c.backing).st_ino:
                    continue
                if exists and os.path.isdir(target):
                    self.evict(rel)
                tmp = os.path.join(self.meta, 'link-tmp')
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.link(c.backing, tmp)
                os.rename(tmp, target)
            elif isinstance(c, Dir):
                stale.discard(name)
                if c.dur == rel:
                    continue
                if exists:
                    self.evict(rel)
                if c.dur is not None:
                    os.rename(os.path.join(self.under, c.dur), target)
                    self.reprefix(c.dur, rel)
                else:
                    os.mkdir(target, stat.S_IMODE(c.mode))
                    c.dur = rel
        for name in stale:
            self.evict(os.path.join(d.dur, name))

    # ---- FUSE operations ----

    def init(self, path):
        print('lazyfs ready', flush=True)

    def getattr(self, path, fh=None):
        n = self.node_of(path, fh)
        now = n.mtime
        a = {'st_ino': n.ino, 'st_mode': n.mode, 'st_uid': 0, 'st_gid': 0,
             'st_atime': now, 'st_mtime': now, 'st_ctime': now, 'st_blksize': PAGE}
        if isinstance(n, File):
            a.update(st_size=n.size, st_nlink=max(n.nlink, 1), st_blocks=(n.size + 511) // 512)
        elif isinstance(n, Dir):
            a.update(st_size=PAGE, st_nlink=2 + sum(isinstance(c, Dir) for c in n.children.values()))
        else:
            a.update(st_size=0, st_nlink=1, st_rdev=n.rdev)
        return a

    def readdir(self, path, fh):
        d = self.node_of(path, fh)
        return ['.', '..'] + list(d.children)

    def opendir(self, path):
        n = self.lookup(path)
        if not isinstance(n, Dir):
            raise FuseOSError(errno.ENOTDIR)
        return self.open_handle(n)

    def releasedir(self, path, fh):
        self.handles.pop(fh, None)

    def fsyncdir(self, path, datasync, fh):
        self.sync_dir(self.node_of(path, fh))

    def mkdir(self, path, mode):
        d, name = self.parent(path)
        if name in d.children:
            raise FuseOSError(errno.EEXIST)
        c = Dir(self.new_ino(), stat.S_IFDIR | (mode & 0o7777), None)
        self.dirs.append(c)
        d.children[name] = c
        d.mtime = time.time()

    def rmdir(self, path):
        d, name = self.parent(path)
        c = d.children.get(name)
        if c is None:
            raise FuseOSError(errno.ENOENT)
        if not isinstance(c, Dir):
            raise FuseOSError(errno.ENOTDIR)
        if c.children:
            raise FuseOSError(errno.ENOTEMPTY)
        del d.children[name]

    def mknod(self, path, mode, dev):
        d, name = self.parent(path)
        if name in d.children:
            raise FuseOSError(errno.EEXIST)
        if stat.S_ISREG(mode):
            return self.create(path, mode)
        d.children[name] = Special(self.new_ino(), mode, dev)

    def create(self, path, mode, fi=None):
        d, name = self.parent(path)
        if name in d.children:
            raise FuseOSError(errno.EEXIST)
        f = File(self.new_ino(), stat.S_IFREG | (mode & 0o7777), None, 0)
        f.backing = self.backing_for(f.ino)
        os.close(os.open(f.backing, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        d.children[name] = f
        d.mtime = time.time()
        return self.open_handle(f)

    def open(self, path, flags):
        n = self.lookup(path)
        if isinstance(n, Dir):
            raise FuseOSError(errno.EISDIR)
        if not isinstance(n, File):
            raise FuseOSError(errno.ENXIO)
        if flags & os.O_TRUNC:
            self.resize(n, 0)
        return self.open_handle(n)

    def release(self, path, fh):
        self.handles.pop(fh, None)

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        return self.view(self.node_of(path, fh), offset, size)

    def write(self, path, data, offset, fh):
        return self.put(self.node_of(path, fh), data, offset)

    def truncate(self, path, length, fh=None):
        f = self.node_of(path, fh)
        if not isinstance(f, File):
            raise FuseOSError(errno.EINVAL)
        self.resize(f, length)

    def fsync(self, path, datasync, fh):
        f = self.node_of(path, fh)
        if isinstance(f, File):
            self.sync_file(f)
        elif isinstance(f, Dir):
            self.sync_dir(f)

    def unlink(self, path):
        d, name = self.parent(path)
        c = d.children.get(name)
        if c is None:
            raise FuseOSError(errno.ENOENT)
        if isinstance(c, Dir):
            raise FuseOSError(errno.EISDIR)
        del d.children[name]
        c.nlink -= 1
        d.mtime = time.time()

    def rename(self, old, new):
        sd, sname = self.parent(old)
        dd, dname = self.parent(new)
        c = sd.children.get(sname)
        if c is None:
            raise FuseOSError(errno.ENOENT)
        t = dd.children.get(dname)
        if t is c:
            return
        if t is not None:
            if isinstance(t, Dir) and not isinstance(c, Dir):
                raise FuseOSError(errno.EISDIR)
            if isinstance(c, Dir) and not isinstance(t, Dir):
                raise FuseOSError(errno.ENOTDIR)
            if isinstance(t, Dir) and t.children:
                raise FuseOSError(errno.ENOTEMPTY)
            if not isinstance(t, Dir):
                t.nlink -= 1
        del sd.children[sname]
        dd.children[dname] = c
        sd.mtime = dd.mtime = time.time()

    def chmod(self, path, mode):
        n = self.lookup(path)
        n.mode = stat.S_IFMT(n.mode) | (mode & 0o7777)

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        n = self.lookup(path)
        n.mtime = times[1] if times else time.time()

    def access(self, path, amode):
        self.lookup(path)
        return 0

    def statfs(self, path):
        s = os.statvfs(self.under)
        return {k: getattr(s, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail',
                                           'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    def link(self, target, source):
        raise FuseOSError(errno.EPERM)

    def symlink(self, target, source):
        raise FuseOSError(errno.EPERM)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: lazyfs.py UNDER MOUNTPOINT\n')
        return 2
    under, mnt = sys.argv[1], sys.argv[2]
    FUSE(LazyFS(under), mnt, foreground=True, nothreads=True, direct_io=True, hard_remove=True,
         use_ino=True, attr_timeout=0, entry_timeout=0, negative_timeout=0, fsname='lazyfs', subtype='lazyfs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
