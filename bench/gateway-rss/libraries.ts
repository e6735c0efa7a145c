/**
 * The RSS floor for bench/gateway-rss: a process that loads what the gateway loads — the device
 * SDK over AMQP, better-sqlite3 in a worker thread (as the outbox runs it), serialport, D-Bus,
 * pino, ajv, yaml, commander — and then idles until SIGTERM.
 */
import { Worker } from 'node:worker_threads';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import common from 'azure-iot-common';
import Database from 'better-sqlite3';
import { SerialPort } from 'serialport';
import dbus from 'dbus-next';
import pino from 'pino';
import Ajv from 'ajv';
import YAML from 'yaml';
import { Command } from 'commander';

const loaded = [deviceSdk.Client, deviceAmqp.Amqp, common.Message, Database, SerialPort, dbus.systemBus, pino, Ajv, YAML.parse, Command];
const worker = new Worker("const D = require('better-sqlite3'); const db = new D(':memory:'); setInterval(() => db.prepare('select 1').get(), 1000);", { eval: true });
const timer = setInterval(() => undefined, 1000);
process.once('SIGTERM', () => {
  clearInterval(timer);
  void worker.terminate().then(() => process.exit(0));
});
if (loaded.some((x) => x === undefined)) throw new Error('a library did not load');
