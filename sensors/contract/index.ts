export type { Reading, ReadingFlags, ReadingKind, Sample, SensorSource } from './reading.js';
