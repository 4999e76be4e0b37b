"""The ``crop_gray48_ferplus`` preprocessing, as the runtime engine does it (one implementation, in core).

FER2013 / FER+ crops are square, about as tall as a YuNet face box and centred on it: on 389 PublicTest crops
(upscaled x3 into a gray canvas) YuNet's box measured median 0.82 x 1.02 of the crop side (w x h), centred
within 1-2% of the side. So the crop is the square of side ``max(w, h)`` around the box centre.
"""

from emotion.core.align import square_crop
from emotion.core.classifiers import square_gray48 as crop_gray48_ferplus

__all__ = ["crop_gray48_ferplus", "square_crop"]
