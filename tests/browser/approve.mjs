// Opens an IRAS approval page in headless Chromium as an on-call engineer would: reads the
// plan, approves it, then clicks Approve again on a second copy of the page, which must say
// the approval was already used.
//
// usage: node approve.mjs <approval-url> <screenshot.png>
// Prints one JSON line with what it saw; exits non-zero on the first check that fails.
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node approve.mjs <approval-url> <screenshot.png>');
  process.exit(2);
}

function check(condition, message) {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine has no network beyond loopback: keep Chromium from reaching out.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

try {
  const context = await browser.newContext();
  const first = await context.newPage();
  const second = await context.newPage();

  const response = await first.goto(url);
  check(response.status() === 200, `approval page answered ${response.status()}`);
  await second.goto(url);

  const steps = first.locator('.step');
  const count = await steps.count();
  check(count > 0, 'the page shows no plan steps');
  const seen = [];
  for (let i = 0; i < count; i++) {
    const step = steps.nth(i);
    for (const part of ['.command', '.rollback', '.risk']) {
      const el = step.locator(part);
      check(await el.isVisible(), `step ${i + 1}: ${part} is not visible`);
      const text = (await el.innerText()).trim();
      check(text.length > 0, `step ${i + 1}: ${part} is empty`);
    }
    seen.push({
      command: (await step.locator('.command').innerText()).trim(),
      rollback: (await step.locator('.rollback').innerText()).trim(),
      risk: (await step.locator('.risk').innerText()).trim(),
    });
  }
  await first.screenshot({ path: screenshot, fullPage: true });

  const name = first.locator('input[name="approver"]');
  if (await name.count()) {
    await name.fill('alice (browser test)');
  }
  await first.click('#approve');
  await first.waitForSelector('#outcome');
  const outcome = (await first.locator('#outcome').innerText()).trim();
  check(/approved/i.test(outcome), `after Approve the page says: ${outcome}`);
  // The typed name is recorded for what it is, with the channel the link was sent to.
  const recorded = (await first.locator('#recorded').innerText()).trim();
  check(/self-declared/.test(recorded) && /link sent to/.test(recorded), `the page says it recorded: ${recorded}`);

  // The second copy of the page still shows its buttons; its click must be refused.
  await second.click('#approve');
  await second.waitForLoadState();
  const again = (await second.locator('body').innerText()).trim();
  check(/already used/i.test(again), `a second approval was not refused: ${again.slice(0, 200)}`);

  console.log(JSON.stringify({ steps: seen, outcome, recorded, second: again.split('\n')[0] }));
} finally {
  await browser.close();
}
