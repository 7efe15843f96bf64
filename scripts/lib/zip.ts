/**
 * Reads zip files (a deployment package): lists the entries from the central directory and extracts them.
 * Enough for what `serverless package` writes (stored or deflated entries, no zip64, no encryption), with no
 * dependency and no `unzip` binary.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { inflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const CENTRAL_FILE_HEADER = 0x02014b50;
const LOCAL_FILE_HEADER = 0x04034b50;

class ZipError extends Error {
  override readonly name = 'ZipError';
}

/** The entries of the zip held in `data`, in central-directory order. */
export function zipEntries(data: Buffer): ZipEntry[] {
  // The end-of-central-directory record is 22 bytes plus a comment of up to 65535 bytes, at the very end.
  let eocd = -1;
  for (let at = data.length - 22; at >= Math.max(0, data.length - 22 - 0xffff); at--) {
    if (data.readUInt32LE(at) === END_OF_CENTRAL_DIRECTORY) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('not a zip file (no end of central directory record)');
  const count = data.readUInt16LE(eocd + 10);
  let at = data.readUInt32LE(eocd + 16);
  if (count === 0xffff || at === 0xffffffff) throw new ZipError('zip64 archives are not supported');
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (data.readUInt32LE(at) !== CENTRAL_FILE_HEADER) throw new ZipError(`corrupt central directory at byte ${at}`);
    const nameLength = data.readUInt16LE(at + 28);
    const extraLength = data.readUInt16LE(at + 30);
    const commentLength = data.readUInt16LE(at + 32);
    entries.push({
      method: data.readUInt16LE(at + 10),
      compressedSize: data.readUInt32LE(at + 20),
      size: data.readUInt32LE(at + 24),
      localHeaderOffset: data.readUInt32LE(at + 42),
      name: data.toString('utf8', at + 46, at + 46 + nameLength),
    });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The uncompressed content of one entry. */
export function readEntry(data: Buffer, entry: ZipEntry): Buffer {
  const at = entry.localHeaderOffset;
  if (data.readUInt32LE(at) !== LOCAL_FILE_HEADER) throw new ZipError(`corrupt local header for ${entry.name}`);
  const start = at + 30 + data.readUInt16LE(at + 26) + data.readUInt16LE(at + 28);
  const raw = data.subarray(start, start + entry.compressedSize);
  if (entry.method === 0) return Buffer.from(raw);
  if (entry.method === 8) return inflateRawSync(raw);
  throw new ZipError(`${entry.name}: unsupported compression method ${entry.method}`);
}

/** Lists the entries of the zip file at `path`. */
export function listZip(path: string): ZipEntry[] {
  return zipEntries(readFileSync(path));
}

/** Extracts the zip file at `path` into `directory`; returns the entries written. */
export function extractZip(path: string, directory: string): ZipEntry[] {
  const data = readFileSync(path);
  const root = resolve(directory);
  const entries = zipEntries(data);
  for (const entry of entries) {
    if (entry.name.endsWith('/')) continue;
    const target = resolve(join(root, entry.name));
    if (!target.startsWith(root + sep)) throw new ZipError(`${entry.name}: path leaves the target directory`);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, readEntry(data, entry));
  }
  return entries;
}
