import { EventEmitter } from 'node:events';
import type * as TE from 'typed-emitter';

/** Event name → listener signature. */
export type EventMap = TE.EventMap;
export type TypedEmitter<E extends EventMap> = TE.default<E>;
/** EventEmitter with typed events (typed-emitter's types over Node's class). */
export const TypedEventEmitter = EventEmitter as unknown as { new <E extends EventMap>(): TypedEmitter<E> };

/**
 * A long-running operation: a typed event emitter for progress that is also awaitable.
 * `await store.pull(ref).on('layer', show)` works, as does keeping the handle and
 * awaiting `.result` later. Work starts on the next tick so listeners attach first.
 */
export class Operation<T, Events extends EventMap> extends TypedEventEmitter<Events> implements PromiseLike<T> {
  /** Settles with the operation's outcome. */
  readonly result: Promise<T>;

  constructor(run: (emit: <E extends keyof Events>(event: E, ...args: Parameters<Events[E]>) => void) => Promise<T>) {
    super();
    const emit = <E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void => {
      this.emit(event, ...args);
    };
    this.result = new Promise<T>((resolve, reject) => {
      setImmediate(() => {
        run(emit).then(resolve, reject);
      });
    });
  }


  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.result.then(onfulfilled, onrejected);
  }

  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.result.catch(onrejected);
  }
}
