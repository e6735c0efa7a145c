import t from 'tap';
import { MemoryOutbox } from '../../helpers/memory-outbox.js';
import { outboxContract } from './outbox-contract.js';

outboxContract(t, 'MemoryOutbox', async (t) => {
  const outbox = new MemoryOutbox();
  t.teardown(() => outbox.close());
  return outbox;
});
