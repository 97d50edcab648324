"""``onnxcomp unpack``: turn an ``.onnxc`` file back into a byte-identical ONNX model."""

from __future__ import annotations

import click

from onnxcomp.commands.common import emit_json, json_option, output_options, say
from onnxcomp.packing import unpack_file


@click.command("unpack")
@click.argument("packed", type=click.Path(dir_okay=False))
@output_options
@click.option("--external-data/--embedded", "external_data", default=None,
              help="Write weights to OUTPUT.data / inside OUTPUT (default: as the packed model had them).")
@json_option
def command(packed: str, output: str, force: bool, external_data: bool | None, as_json: bool) -> None:
    """Unpack PACKED (.onnxc) into an ONNX model; tensor bytes are identical to the packed model's."""
    report = unpack_file(packed, output, overwrite=force, external_data=external_data)
    if as_json:
        emit_json(report.to_dict())
    else:
        say(f"unpacked {output}: {report.tensors} tensors, {report.weight_bytes:,} weight bytes from "
            f"{report.packed_bytes:,} packed bytes ({report.megabytes_per_second:,.0f} MB/s decode)"
            + (", weights in external data" if report.external_data else ""))
