"""The build step that installs `mixingbuddy-hub.pth` beside the package (pyproject's `cmdclass`; used at build time).

Python runs the `.pth` file's import line when it starts, so the plain names of the model repository's files
(`import processing_mixingbuddy`) resolve through `mixingbuddy.hub` in every process, as they did when the files
imported each other by plain name.
"""

from pathlib import Path

from setuptools.command.build_py import build_py

PTH_FILE = "mixingbuddy-hub.pth"


class BuildPyWithHubAliases(build_py):
    def run(self):
        super().run()
        # a wheel takes the file from build_lib; an editable wheel from the install folder it assembles
        folder = Path(self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PTH_FILE).write_text("import mixingbuddy.hub\n")
