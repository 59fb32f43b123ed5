"""A MISP server simulator that behaves like the real one where misp-ti depends on it.

It serves ``POST /attributes/restSearch``, ``POST /events/restSearch``,
``GET /decayingModel/index`` and ``GET /servers/getVersion`` on a loopback port from a :class:`Dataset` (the
shipped sample of real events, a directory of MISP event JSON, or generated
data), with MISP's filter syntax, paging, post-filters, decay scores, error
bodies and result-count header. Behaviour was read from MISP's source
(MISP/MISP ``app/Model/MispAttribute.php``, ``Event.php``, ``AppModel.php``,
``AppController.php``, ``DecayingModel.php``, ``DecayingModelsFormulas/``);
the modules say which file each rule comes from.
``tests/simulator/test_real_misp_simulator.py`` compares its answers field by field
with exchanges recorded from a real MISP 2.5.1 (``tests/data/real_misp_2.5.1``).

Paging and ``X-Result-Count`` (``/attributes/restSearch``)
----------------------------------------------------------
MISP takes the SQL page (``limit``/``page``, 1-based) first and applies the
post-filters (``enforceWarninglist``, ``excludeDecayed``) to that page
afterwards, so a page can be short or empty while later pages still hold data
(MISP #9175). ``X-Result-Count`` is computed as in
``MispAttribute::__iteratedFetch`` (MISP #9422 reports the ``limit + 1``)::

    no limit:           number of matching rows (before post-filters)
    limit L, page P:    R = rows of the SQL page (before post-filters, 0..L)
                        K = attributes left after post-filters
                        K == 0 or K == L  ->  R + 1
                        otherwise         ->  R

So **the SQL page was full (more data may follow) iff X-Result-Count >= L**;
past the end the header says ``1``. The only false positive is a page of
``L - 1`` rows that the post-filters emptied completely (header ``L``): one
extra request then finds the end. With ``limit: 1`` the rule cannot tell the
end from a full page (MISP's quirk): use ``limit >= 2``.
``X-Skipped-Elements-Count`` carries the number of rows the post-filters
dropped from this page.

``/events/restSearch`` puts the total number of matching events (all pages)
in ``X-Result-Count``, as ``Event::filterEventIds`` does, with
``X-Skipped-Elements-Count: 0`` and ``Content-Disposition: attachment;
filename="misp.event.list.json"``.

Use::

    from misp_ti.simulator import Dataset, MispSimulator

    # any callable returning an aware datetime; tests use misp_ti.testing.clock.ManualClock
    with MispSimulator(Dataset.sample(), clock=clock) as sim:
        httpx.post(f"{sim.url}/attributes/restSearch", headers={"Authorization": "test-key"}, json={...})
"""

from misp_ti.simulator.dataset import Dataset, DatasetError
from misp_ti.simulator.faults import FAULT_KINDS, FaultPlan, FaultPlanError
from misp_ti.simulator.server import RecordedRequest, RequestInfo
from misp_ti.simulator.simulator import MispSimulator
from misp_ti.simulator.state import attribute_result_count
from misp_ti.simulator.warninglist import DEFAULT_WARNINGLIST, Warninglist

__all__ = [
    "Dataset",
    "DatasetError",
    "MispSimulator",
    "FaultPlan",
    "FaultPlanError",
    "FAULT_KINDS",
    "RecordedRequest",
    "RequestInfo",
    "Warninglist",
    "DEFAULT_WARNINGLIST",
    "attribute_result_count",
]
