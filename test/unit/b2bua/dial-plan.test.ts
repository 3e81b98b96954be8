import t from 'tap';
import { DialPlan, DialPlanError } from '../../../lib/b2bua/dial-plan';

t.test('a complete number in the plan matches; a prefix is incomplete (484); others do not match (404)', async (tt) => {
  const plan = new DialPlan('6XXX, 7[0-4]XX');
  tt.equal(plan.classify('6001'), 'match');
  tt.equal(plan.classify('7499'), 'match');
  tt.equal(plan.classify('7500'), 'no-match', '7[0-4] excludes 75xx');
  tt.equal(plan.classify('60'), 'incomplete');
  tt.equal(plan.classify('7'), 'incomplete');
  tt.equal(plan.classify('60011'), 'no-match', 'too long');
  tt.equal(plan.classify('5001'), 'no-match');
  tt.equal(plan.classify(''), 'no-match');
  tt.equal(plan.classify('6a01'), 'no-match', 'letters never match');
});

t.test('Z and N classes, literal digits, digit lists', async (tt) => {
  const plan = new DialPlan('1Z,2N,3[135]');
  tt.equal(plan.classify('11'), 'match');
  tt.equal(plan.classify('10'), 'no-match');
  tt.equal(plan.classify('22'), 'match');
  tt.equal(plan.classify('21'), 'no-match');
  tt.equal(plan.classify('35'), 'match');
  tt.equal(plan.classify('34'), 'no-match');
});

t.test('bad patterns are refused with a message naming them', async (tt) => {
  for (const bad of ['', ',', '6XX?', '6[', '6[9-1]', '6[a]', '6[]']) {
    tt.throws(() => new DialPlan(bad), DialPlanError, JSON.stringify(bad));
  }
  tt.throws(() => new DialPlan('6X!'), /6X!/);
});
