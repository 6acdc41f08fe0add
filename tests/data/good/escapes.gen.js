// Generates escapes_session.json (an ingest session) and escapes_payload.compact.json (the
// body JavaScript's JSON.stringify gives for it) (run: node escapes.gen.js). The session has
// every escape class, non-ASCII text, credits 0.1 + 0.2, no latency (so it is derived), user
// turns without latency_ms, a bot turn without latency in the middle, no call.
const fs = require('fs');
const ctl = Array.from({length: 32}, (_, i) => String.fromCharCode(i)).join('').slice(1);
const session = {
  session_id: 'sess_escapes-01',
  agent_id: 'AGENT_x-9',
  agent_name: 'Agënt «Q» \u65e5\u672c "quoted" \\ back/slash',
  duration_seconds: 0,
  credits_used: 0.1 + 0.2,
  transcript: [
    {role: 'bot', content: 'greeting', timestamp: '2026-03-15T14:30:01.000Z'},
    {role: 'user', content: 'controls:' + ctl, timestamp: '2026-03-15T14:30:02.001Z'},
    {role: 'bot', content: 'no latency in the middle', timestamp: '2026-03-15T14:30:03.000Z'},
    {role: 'user', content: 'DEL \x7f U+2028 \u2028 U+2029 \u2029 emoji \u{1F600} </script>',
     timestamp: '2026-03-15T14:30:04.999Z'},
    {role: 'bot', content: '', timestamp: '2026-03-15T14:30:05.000Z', latency_ms: 1},
    {role: 'user', content: 'tab\there', timestamp: '2026-03-15T14:30:06.000Z'},
    {role: 'bot', content: 'last', timestamp: '2026-03-15T14:30:07.000Z', latency_ms: 2},
  ],
};
fs.writeFileSync('escapes_session.json', JSON.stringify(session, null, 2) + '\n');
const bot = session.transcript.filter(t => t.role === 'bot' && 'latency_ms' in t)
                  .map(t => t.latency_ms);
const sum = bot.reduce((a, b) => a + b, 0);
const payload = {
  event: 'session.completed',
  timestamp: '2026-03-15T14:32:08.000Z',
  data: {
    session_id: session.session_id, agent_id: session.agent_id, agent_name: session.agent_name,
    duration_seconds: session.duration_seconds, credits_used: session.credits_used,
    transcript: session.transcript.map(t => t.role === 'user' ? {...t, latency_ms: null} : t),
    recording_url: null,
    latency: {min_ms: Math.min(...bot), max_ms: Math.max(...bot),
              avg_ms: Math.round(sum / bot.length)},
    call: null,
  },
};
fs.writeFileSync('escapes_payload.compact.json', JSON.stringify(payload));
