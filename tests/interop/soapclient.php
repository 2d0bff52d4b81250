<?php
// PHP SoapClient interop client for SmartCTIWSCommand (used by tests/test_command_service.py).
// Usage: php soapclient.php <wsdl-url>  < calls.json
//   calls.json: [{"op": "Logon", "args": {"device": "2001", ...}}, ...]  (null = xsi:nil)
// Prints JSON: [{"op": ..., "return": <value as decoded by SoapClient>, "type": "<php type>"}, ...]
// or {"error": "..."} with exit code 1.
ini_set('default_socket_timeout', '10');
try {
    $client = new SoapClient($argv[1], [
        'cache_wsdl' => WSDL_CACHE_NONE,
        'soap_version' => SOAP_1_1,
        'exceptions' => true,
        'encoding' => 'UTF-8',
        'trace' => true,
    ]);
    $calls = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
    $out = [];
    foreach ($calls as $call) {
        // null stays null: SoapClient writes it as xsi:nil="true" (the elements are nillable).
        $result = $client->__soapCall($call['op'], [$call['args']]);
        $value = $result->return ?? null;
        $out[] = ['op' => $call['op'], 'return' => $value, 'type' => gettype($value)];
    }
    echo json_encode($out, JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR), "\n";
} catch (Throwable $e) {
    echo json_encode(['error' => get_class($e) . ': ' . $e->getMessage()]), "\n";
    exit(1);
}
