package org.ssdkd.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * An 8-bit RGB image, either packed ARGB ints (as `Bitmap.getPixels` returns them; alpha is ignored, like
 * `load_rgb` drops it) or interleaved RGB bytes (`H x W x 3`, as the golden files store them).
 */
class PixelImage private constructor(
    val width: Int,
    val height: Int,
    private val argb: IntArray?,
    private val rgb: ByteArray?,
) {
    init {
        require(width > 0 && height > 0) { "image must not be empty, got ${width}x$height" }
    }

    /** Writes the R, G, B values (0..255) of `n` pixels of row [y] starting at column [x0] into [out]. */
    fun readRow(y: Int, x0: Int, n: Int, out: IntArray) {
        var o = 0
        if (argb != null) {
            var i = y * width + x0
            repeat(n) {
                val p = argb[i++]
                out[o++] = (p shr 16) and 0xFF
                out[o++] = (p shr 8) and 0xFF
                out[o++] = p and 0xFF
            }
        } else {
            val bytes = rgb!!
            var i = (y * width + x0) * 3
            repeat(3 * n) { out[o++] = bytes[i++].toInt() and 0xFF }
        }
    }

    companion object {
        fun fromArgb(argb: IntArray, width: Int, height: Int): PixelImage {
            require(argb.size == width * height) { "expected ${width * height} ARGB pixels, got ${argb.size}" }
            return PixelImage(width, height, argb, null)
        }

        fun fromRgb(rgb: ByteArray, width: Int, height: Int): PixelImage {
            require(rgb.size == width * height * 3) { "expected ${width * height * 3} RGB bytes, got ${rgb.size}" }
            return PixelImage(width, height, null, rgb)
        }
    }
}

/** Where the centre square is taken and how it is box-averaged (see [ImagePipeline.crop]). */
data class Crop(val k: Int, val square: Int, val top: Int, val left: Int)

/**
 * The Kotlin port of `models/preprocessing.py`: same geometry and the same float64 operations in the same order,
 * so the float input is bit-identical to numpy's and the int8/uint8 input byte-identical.
 */
object ImagePipeline {
    /** Largest centre square; box factor k = s / size when s >= 2 * size (square trimmed to a multiple of k). */
    fun crop(height: Int, width: Int, size: Int): Crop {
        require(size > 0) { "input size must be positive, got $size" }
        var s = minOf(height, width)
        val k = if (s >= 2 * size) s / size else 1
        s = (s / k) * k
        return Crop(k, s, (height - s) / 2, (width - s) / 2)
    }

    /** Image -> `size x size x 3` float64 pixels in [0, 255], HWC (`resize_center_crop`). */
    fun resizeCenterCrop(image: PixelImage, size: Int): DoubleArray {
        val c = crop(image.height, image.width, size)
        val m = c.square / c.k
        val square = DoubleArray(m * m * 3)
        val row = IntArray(c.square * 3)
        if (c.k == 1) {
            for (y in 0 until m) {
                image.readRow(c.top + y, c.left, m, row)
                for (i in 0 until m * 3) square[y * m * 3 + i] = row[i].toDouble()
            }
        } else {
            val sums = LongArray(m * 3)
            val area = (c.k * c.k).toDouble()
            for (by in 0 until m) {
                sums.fill(0L)
                for (dy in 0 until c.k) {
                    image.readRow(c.top + by * c.k + dy, c.left, c.square, row)
                    for (x in 0 until c.square) {
                        val o = (x / c.k) * 3
                        sums[o] += row[3 * x].toLong()
                        sums[o + 1] += row[3 * x + 1].toLong()
                        sums[o + 2] += row[3 * x + 2].toLong()
                    }
                }
                for (i in 0 until m * 3) square[by * m * 3 + i] = sums[i].toDouble() / area
            }
        }
        return bilinear(square, m, size)
    }

    /** Half-pixel-centre bilinear resize of an `m x m x 3` float64 square, edge-clamped (`_bilinear`). */
    fun bilinear(img: DoubleArray, m: Int, size: Int): DoubleArray {
        val scale = m.toDouble() / size.toDouble()
        val i0 = IntArray(size)
        val i1 = IntArray(size)
        val f = DoubleArray(size)
        for (i in 0 until size) {
            val src = ((i.toDouble() + 0.5) * scale - 0.5).coerceIn(0.0, m - 1.0)
            val lo = Math.floor(src).toInt()
            i0[i] = lo
            i1[i] = minOf(lo + 1, m - 1)
            f[i] = src - lo.toDouble()
        }
        val out = DoubleArray(size * size * 3)
        for (y in 0 until size) {
            val fy = f[y]
            val r0 = i0[y] * m * 3
            val r1 = i1[y] * m * 3
            for (x in 0 until size) {
                val fx = f[x]
                val c0 = i0[x] * 3
                val c1 = i1[x] * 3
                for (ch in 0 until 3) {
                    val a = img[r0 + c0 + ch]
                    val b = img[r0 + c1 + ch]
                    val c = img[r1 + c0 + ch]
                    val d = img[r1 + c1 + ch]
                    val top = (1.0 - fx) * a + fx * b
                    val bottom = (1.0 - fx) * c + fx * d
                    out[(y * size + x) * 3 + ch] = (1.0 - fy) * top + fy * bottom
                }
            }
        }
        return out
    }

    /** HWC float64 pixels -> float32 `(v / 255 - mean) / std` in the contract's layout (`normalize`). */
    fun normalize(pixels: DoubleArray, size: Int, mean: DoubleArray, std: DoubleArray, layout: Layout): FloatArray {
        val plane = size * size
        require(pixels.size == plane * 3) { "expected ${plane * 3} pixel values, got ${pixels.size}" }
        val out = FloatArray(plane * 3)
        for (p in 0 until plane) {
            for (ch in 0 until 3) {
                val v = ((pixels[p * 3 + ch] / 255.0 - mean[ch]) / std[ch]).toFloat()
                out[if (layout == Layout.NHWC) p * 3 + ch else ch * plane + p] = v
            }
        }
        return out
    }

    /** `clip(rint(x / scale + zero_point))`, round half to even like numpy (`quantize`). */
    fun quantize(x: Float, q: QuantParams, type: TensorType): Int {
        val v = Math.rint(x.toDouble() / q.scale + q.zeroPoint.toDouble())
        return v.coerceIn(type.minCode.toDouble(), type.maxCode.toDouble()).toInt()
    }

    /** Float input -> the bytes of the model input tensor (float32 native order, or int8/uint8 codes). */
    fun encode(x: FloatArray, type: TensorType, q: QuantParams?): ByteBuffer {
        val buf = ByteBuffer.allocateDirect(x.size * type.byteSize).order(ByteOrder.nativeOrder())
        when (type) {
            TensorType.FLOAT32 -> buf.asFloatBuffer().put(x)
            TensorType.INT8, TensorType.UINT8 -> {
                val params = requireNotNull(q) { "${type.jsonName} input needs a scale and zero-point" }
                for (v in x) buf.put(quantize(v, params, type).toByte())
            }
            TensorType.FLOAT16 -> throw ConfigException(
                "float16 model input is not supported by the app: export the model with float32 or int8 input",
            )
        }
        buf.rewind()
        return buf
    }

    /** Image -> model input tensor bytes, following [config] (`Preprocessing.model_input`). */
    fun modelInput(image: PixelImage, config: PreprocessingConfig): ByteBuffer {
        val pixels = resizeCenterCrop(image, config.inputSize)
        val x = normalize(pixels, config.inputSize, config.mean, config.std, config.layout)
        return encode(x, config.inputType, config.inputQuant)
    }
}
