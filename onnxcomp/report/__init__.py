"""Reports of ``onnxcomp optimize``: the JSON document and a self-contained HTML page rendered from it.

The HTML is a pure view of the JSON (:func:`render_html` takes the document), with plots drawn as inline SVG:
no script, no stylesheet or font from the network, so it opens anywhere, offline, and can be attached to a
release or a CI run as one file.
"""

from onnxcomp.report.document import build_document, summary_lines
from onnxcomp.report.html import render_html

__all__ = ["build_document", "render_html", "summary_lines"]
