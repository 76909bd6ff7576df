// Evaluates IAM requests with @cloud-copilot/iam-simulate (identity, resource and trust policies,
// same- and cross-account, every condition operator). Reads a JSON array of simulations on
// stdin, writes one result per line: {"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied",
// "errors": ..., "denied_by": [...]}. Used by tests/access/evaluate.py.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const c of process.stdin) chunks.push(c)
const sims = JSON.parse(Buffer.concat(chunks).toString('utf8'))

function deciding(analysis) {
  // The explicit denies, or for an implicit deny the side that did not allow.
  const out = []
  for (const side of ['identityAnalysis', 'resourceAnalysis']) {
    const a = analysis?.[side]
    if (!a) continue
    for (const s of a.denyStatements ?? []) out.push(`${side}: deny ${s.statement?.Sid ?? JSON.stringify(s.statement).slice(0, 120)}`)
    if (a.result && a.result !== 'Allowed' && a.result !== 'NotApplicable') out.push(`${side}: ${a.result}`)
  }
  return out
}

for (const sim of sims) {
  const full = { serviceControlPolicies: [], resourceControlPolicies: [], identityPolicies: [], ...sim }
  try {
    const r = await runSimulation(full, {})
    if (r.errors) {
      process.stdout.write(JSON.stringify({ result: 'Error', errors: r.errors }) + '\n')
      continue
    }
    const analysis = r.result?.analysis
    process.stdout.write(JSON.stringify({ result: r.overallResult ?? analysis?.result, denied_by: deciding(analysis) }) + '\n')
  } catch (e) {
    process.stdout.write(JSON.stringify({ result: 'Error', errors: String(e) }) + '\n')
  }
}
