// node-soap interop client for SmartCTIWSCommand (used by tests/test_command_service.py).
// Usage: node soapclient.js <wsdl-url>  < calls.json
//   calls.json: [{"op": "Logon", "args": {"device": "2001", ...}}, ...]  (null = client's choice: nil or omitted)
// Prints JSON: [{"op": ..., "return": <value as decoded by node-soap>, "type": "<js type>"}, ...]
// or {"error": "..."} with exit code 1.
'use strict';
const soap = require('soap');

function readStdin() {
  return new Promise((resolve, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => { data += chunk; });
    process.stdin.on('end', () => resolve(data));
    process.stdin.on('error', reject);
  });
}

async function main() {
  const client = await soap.createClientAsync(process.argv[2], { timeout: 10000 });
  const calls = JSON.parse(await readStdin());
  const out = [];
  for (const call of calls) {
    // null is passed through; node-soap decides how to write it (nil or omitted).
    const [result] = await client[call.op + 'Async'](call.args);
    const value = result === null || result === undefined ? null : result.return;
    out.push({ op: call.op, return: value === undefined ? null : value, type: typeof value });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }) + '\n');
  process.exit(1);
});
