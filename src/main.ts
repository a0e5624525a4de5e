import { drainCommand, sipBridgeCommand, tokenCommand } from './cli.js';
import { main } from './server.js';

if (process.argv[2] === 'token') {
  process.exitCode = await tokenCommand(process.argv.slice(3));
} else if (process.argv[2] === 'drain') {
  process.exitCode = await drainCommand(process.argv.slice(3));
} else if (process.argv[2] === 'sip-bridge') {
  process.exitCode = await sipBridgeCommand(process.argv.slice(3));
} else {
  main().catch((err) => {
    process.stderr.write(`failed to start: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
