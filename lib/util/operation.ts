import { EventEmitter } from 'node:events';
import type TypedEmitter from 'typed-emitter';
import type { EventMap } from 'typed-emitter';

/**
 * A long-running operation: a typed event emitter for progress that is also awaitable.
 * `await store.pull(ref).on('layer', show)` works, as does keeping the handle and
 * awaiting `.result` later. Work starts on the next tick so listeners attach first.
 */
export class Operation<T, Events extends EventMap> extends (EventEmitter as unknown as new () => TypedEmitter<EventMap>) implements PromiseLike<T> {
  /** Settles with the operation's outcome. */
  readonly result: Promise<T>;

  constructor(run: (emit: <E extends keyof Events>(event: E, ...args: Parameters<Events[E]>) => void) => Promise<T>) {
    super();
    const emit = <E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void => {
      (this as unknown as EventEmitter).emit(event as string, ...args);
    };
    this.result = new Promise<T>((resolve, reject) => {
      setImmediate(() => {
        run(emit).then(resolve, reject);
      });
    });
  }

  override on<E extends keyof Events>(event: E, listener: Events[E]): this {
    return super.on(event as string, listener);
  }

  override once<E extends keyof Events>(event: E, listener: Events[E]): this {
    return super.once(event as string, listener);
  }

  override off<E extends keyof Events>(event: E, listener: Events[E]): this {
    return super.off(event as string, listener);
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
