import type { Command } from 'commander'; export function registerHubCommands(program: Command): void { void program; }
