// The js-libp2p 3.x tree calls Promise.withResolvers() (ES2024) at run time, e.g. in
// @libp2p/utils' stream code, @libp2p/ping and yamux. Node 22 has it; Node 20 does not.
// Install a spec-equivalent fallback before any libp2p module runs. Harmless on Node >= 22.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
