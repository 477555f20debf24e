"""``build_async``: ``build()`` for asyncio programs, cancellable with ``task.cancel()``."""

import asyncio
import functools
import os
from typing import Any, Callable, List, Literal, Optional, Tuple, TypeVar, Union

from staves._staves import CancelToken, DockerBuilder, ImageSpec, MockBuilder, build
from staves._types import BuildReport, Compression, Event, Locale, RegistryOptions

_T = TypeVar("_T")


async def build_async(
    spec: ImageSpec,
    builder: Union[DockerBuilder, MockBuilder],
    outputs: Optional[Union[List[str], Tuple[str, ...]]] = None,
    on_log: Optional[Callable[[str], object]] = None,
    *,
    on_event: Optional[Callable[[Event], object]] = None,
    jobs: Optional[int] = None,
    load_average: Optional[float] = None,
    compression: Compression = "gzip",
    version: Optional[str] = None,
    stdlib: Optional[bool] = None,
    locale: Optional[Locale] = None,
    cancel: Optional[CancelToken] = None,
    locked: bool = False,
    frozen: bool = False,
    binhost: Optional[Union[str, List[str]]] = None,
    registry: Optional[RegistryOptions] = None,
    sbom: Optional[Union[str, "os.PathLike[str]"]] = None,
    sbom_format: Literal["spdx-json", "cyclonedx-json"] = "spdx-json",
    deny_advisories: bool = False,
    cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    rebuild: bool = False,
    offline: bool = False,
    portage_merge: bool = False,
    binhost_idle_timeout: Optional[int] = None,
    binhost_timeout: Optional[int] = None,
) -> BuildReport:
    """``build()`` as a coroutine: ``report = await staves.build_async(spec, builder, ["docker"])``.

    The build runs in a worker thread, and the event loop stays free. ``on_log`` and ``on_event`` are called on
    the event loop's thread, in order, so they may touch asyncio objects; an exception in one cancels the build (if
    it is still running; its containers are removed) and is raised here. Cancelling the task (``task.cancel()``, ``asyncio.wait_for`` timing out, ...) cancels the
    build, waits until its containers are removed, then raises ``CancelledError``. ``cancel`` works as in
    ``build()``; cancelling the task does not cancel that token.
    """
    loop = asyncio.get_running_loop()
    token = cancel.child() if cancel is not None else CancelToken()
    failures: List[BaseException] = []

    def deliver(callback: Callable[[_T], object], value: _T) -> None:
        # On the event loop's thread. After a failure, or once the task is cancelled, nothing more is delivered.
        if failures or token.is_cancelled():
            return
        try:
            callback(value)
        except BaseException as exc:  # re-raised by the coroutine, as build() re-raises a callback's exception
            failures.append(exc)
            token.cancel()

    def from_worker(callback: Optional[Callable[[_T], object]]) -> Optional[Callable[[_T], None]]:
        # On the build's threads: hand the value to the event loop and return at once.
        if callback is None:
            return None

        def schedule(value: _T) -> None:
            try:
                loop.call_soon_threadsafe(deliver, callback, value)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                token.cancel()

        return schedule

    call: Callable[[], Any] = functools.partial(
        build,
        spec,
        builder,
        outputs,
        from_worker(on_log),
        on_event=from_worker(on_event),
        jobs=jobs,
        load_average=load_average,
        compression=compression,
        version=version,
        stdlib=stdlib,
        locale=locale,
        cancel=token,
        locked=locked,
        frozen=frozen,
        binhost=binhost,
        registry=registry,
        sbom=sbom,
        sbom_format=sbom_format,
        deny_advisories=deny_advisories,
        cache_dir=cache_dir,
        rebuild=rebuild,
        offline=offline,
        portage_merge=portage_merge,
        binhost_idle_timeout=binhost_idle_timeout,
        binhost_timeout=binhost_timeout,
    )
    future = loop.run_in_executor(None, call)
    try:
        report: BuildReport = await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel()
        await _finished(future)
        raise
    except BaseException:
        if failures:
            raise failures[0] from None
        raise
    if failures:
        raise failures[0]
    return report


async def _finished(future: "asyncio.Future[Any]") -> None:
    """Wait until ``future`` is done (its build has removed its containers), whatever it raises, even if the
    waiting task is cancelled again meanwhile."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except BaseException:
            break
    if not future.cancelled():
        future.exception()  # mark the outcome as retrieved, so asyncio does not log it
