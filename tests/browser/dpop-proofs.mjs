// Proofs made by an independent DPoP implementation (the `dpop` npm
// package, panva), for tests/suite/dpop.rs. Line-delimited JSON on stdin
// and stdout: the first line {"alg": "ES256" | "RS256" | "PS256" | "Ed25519"} makes a
// fresh key pair and answers {"jkt": "..."}; every later line
// {"htm", "htu", "accessToken"?, "nonce"?} answers {"proof": "..."} made
// with that key.
import { createInterface } from "node:readline";
import { calculateThumbprint, generateKeyPair, generateProof } from "dpop";

let keypair;
for await (const line of createInterface({ input: process.stdin })) {
  const msg = JSON.parse(line);
  if (msg.alg) {
    keypair = await generateKeyPair(msg.alg);
    process.stdout.write(JSON.stringify({ jkt: await calculateThumbprint(keypair.publicKey) }) + "\n");
  } else {
    const proof = await generateProof(keypair, msg.htu, msg.htm, msg.nonce, msg.accessToken);
    process.stdout.write(JSON.stringify({ proof }) + "\n");
  }
}
