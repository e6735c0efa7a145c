import t from 'tap';
import { MemoryOutbox } from '../../helpers/memory-outbox.js';
import { outboxContract } from './outbox-contract.js';

outboxContract(t, 'MemoryOutbox', async (t) => {
  const outbox = new MemoryOutbox();
  t.teardown(() => outbox.close());
  return outbox;
}, async (t) => {
  let current = new MemoryOutbox();
  t.teardown(() => current.close());
  const reopen = async () => {
    await current.close();
    current = current.reopen();
    return current;
  };
  return { outbox: current, reopen };
});
