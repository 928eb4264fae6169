import type { JobStatus } from '../jobs/index.js';
import { formatSize } from '../config/index.js';

/** `[#####-----]  42% 120/300 files 1.2 GiB/2.9 GiB 210 MiB/s ETA 8s` */
export function progressLine(s: JobStatus, seconds: number): string {
  const fraction = s.bytesTotal > 0 ? s.bytesDone / s.bytesTotal : s.filesTotal > 0 ? s.filesDone / s.filesTotal : 0;
  const width = 24;
  const filled = Math.round(fraction * width);
  const rate = seconds > 0 ? s.bytesDone / seconds : 0;
  const eta = rate > 0 && s.bytesTotal > s.bytesDone ? `${Math.ceil((s.bytesTotal - s.bytesDone) / rate)}s` : '-';
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${s.filesDone}/${s.filesTotal} files ${formatSize(s.bytesDone)}/${formatSize(s.bytesTotal)} ${formatSize(rate)}/s ETA ${eta}`;
}
